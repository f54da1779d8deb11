// A build's step output, streamed from the worker.
(function () {
  "use strict";
  const out = document.getElementById("build-log");
  if (!out) return;
  const state = document.getElementById("build-state");
  const proto = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${proto}://${location.host}${out.dataset.ws}`);
  const ansi = {};
  ws.onopen = () => ws.send("{}");
  ws.onmessage = (m) => {
    const msg = JSON.parse(m.data);
    if (msg.error) { state.className = "msg error"; state.textContent = msg.error; return; }
    if (msg.done) {
      state.className = "msg success";
      const imageId = msg.image && msg.image.Id;
      if (typeof imageId === "string" && /^sha256:[0-9a-f]{64}$/.test(imageId)) {
        // The new image, as a link to its page (history, tags, containers using it).
        const link = document.createElement("a");
        link.href = `/images/${imageId}/`;
        link.id = "build-image";
        link.textContent = imageId.slice(0, 19);
        state.replaceChildren(link);
      } else {
        state.textContent = "OK";
      }
      return;
    }
    const p = msg.progress || {};
    const text = p.stream || p.status || (p.error ? p.error + "\n" : "");
    if (text) window.estibaAnsi.render(out, text, ansi);
    out.scrollTop = out.scrollHeight;
  };
})();
