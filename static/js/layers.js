// One progress bar per layer, fed by the worker over a websocket: a pull or a push.
//
// estibaLayers(form, payload, finished): on submit, opens the socket named by the
// form's data-socket, sends payload(), draws Docker's JSON progress lines into the
// element named by data-layers and the overall status into data-status; finished(msg)
// returns the text to show when the worker says it is done.
(function () {
  "use strict";

  window.estibaLayers = function (form, payload, finished) {
    const layers = document.getElementById(form.dataset.layers);
    const status = document.getElementById(form.dataset.status);
    const button = form.querySelector("button[type=submit]");

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
      layers.textContent = "";
      status.className = "";
      status.textContent = "…";
      if (button) button.disabled = true;
      const proto = location.protocol === "https:" ? "wss" : "ws";
      const ws = new WebSocket(`${proto}://${location.host}${form.dataset.socket}`);
      ws.onopen = () => ws.send(JSON.stringify(payload()));
      ws.onclose = () => { if (button) button.disabled = false; };
      ws.onmessage = (m) => {
        const msg = JSON.parse(m.data);
        if (msg.error) { status.className = "msg error"; status.textContent = msg.error; ws.close(); return; }
        if (msg.done) {
          status.className = "msg success";
          status.textContent = finished(msg);
          layers.querySelectorAll("progress").forEach((p) => { p.value = p.max; });
          ws.close();
          return;
        }
        const p = msg.progress || {};
        if (p.id && p.status && !/^(Pulling from|Digest|Status|The push refers to)/.test(p.status)) {
          const el = bar(p.id);
          const d = p.progressDetail || {};
          const prog = el.querySelector("progress");
          if (d.total) { prog.max = d.total; prog.value = d.current || 0; }
          if (/complete|exists|pushed|mounted/i.test(p.status)) prog.value = prog.max;
          el.querySelector(".st").textContent = p.status;
          el.dataset.status = p.status;
        } else if (p.status) {
          status.textContent = p.status;
        }
      };
    });
  };
})();
