// Pull an image with one progress bar per layer, fed by the worker over a websocket.
(function () {
  "use strict";
  const form = document.getElementById("pull-form");
  if (!form) return;
  const layers = document.getElementById("layers");
  const status = document.getElementById("pull-status");
  const done = document.getElementById("pull-done");

  function bar(id) {
    let el = layers.querySelector(`[data-layer="${CSS.escape(id)}"]`);
    if (!el) {
      el = document.createElement("div");
      el.className = "layer";
      el.dataset.layer = id;
      const name = document.createElement("code");
      name.textContent = id;
      const p = document.createElement("progress");
      p.max = 1; p.value = 0;
      const st = document.createElement("span");
      st.className = "st";
      el.append(name, p, st);
      layers.appendChild(el);
    }
    return el;
  }

  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const ref = form.ref.value.trim();
    layers.textContent = "";
    done.hidden = true;
    status.className = "";
    status.textContent = "…";
    const proto = location.protocol === "https:" ? "wss" : "ws";
    const ws = new WebSocket(`${proto}://${location.host}/ws/images/pull/`);
    ws.onopen = () => ws.send(JSON.stringify({ ref }));
    ws.onmessage = (m) => {
      const msg = JSON.parse(m.data);
      if (msg.error) { status.className = "msg error"; status.textContent = msg.error; ws.close(); return; }
      if (msg.done) {
        status.className = "msg success";
        status.textContent = (msg.image && msg.image.Id ? msg.image.Id.slice(0, 19) + " — " : "") + ref;
        layers.querySelectorAll("progress").forEach((p) => { p.value = p.max; });
        done.hidden = false;
        document.getElementById("pull-run").href = "/containers/new/?image=" + encodeURIComponent(ref);
        ws.close();
        return;
      }
      const p = msg.progress || {};
      if (p.id && p.status && !/^(Pulling from|Digest|Status)/.test(p.status)) {
        const el = bar(p.id);
        const d = p.progressDetail || {};
        const prog = el.querySelector("progress");
        if (d.total) { prog.max = d.total; prog.value = d.current || 0; }
        if (/complete|exists/i.test(p.status)) prog.value = prog.max;
        el.querySelector(".st").textContent = p.status;
        el.dataset.status = p.status;
      } else if (p.status) {
        status.textContent = p.status;
      }
    };
  });
})();
