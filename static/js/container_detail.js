// A container's page: live state, tabs, live logs, live stats, the terminal.
(function () {
  "use strict";
  const box = document.getElementById("container");
  if (!box) return;
  const id = box.dataset.id;
  const proto = location.protocol === "https:" ? "wss" : "ws";
  const wsUrl = (path) => `${proto}://${location.host}${path}`;

  // --- live state and the buttons that make sense in it ---------------------------------
  // Each state's label in the page's language, as the server printed it.
  const labelsEl = document.getElementById("state-labels");
  const labels = labelsEl ? JSON.parse(labelsEl.textContent) : {};
  function showState(state, status) {
    const st = document.getElementById("state");
    st.textContent = labels[state] || state;
    st.dataset.state = state;
    st.className = "state s-" + state;
    const statusEl = box.querySelector("[data-field=status]");
    if (statusEl && status !== undefined) statusEl.textContent = status;
    box.dataset.state = state;
    box.querySelectorAll("button[data-show]").forEach((b) => {
      b.hidden = !b.dataset.show.split(" ").includes(state);
    });
  }
  showState(document.getElementById("state").dataset.state);
  document.addEventListener("estiba:event", (e) => {
    const ev = e.detail;
    if (ev.kind !== "container" || ev.id !== id) return;
    if (ev.action === "destroy") { showState("removed", ""); return; }
    showState(ev.state, ev.status);
    // A new run: its log and stats are new streams (the old ones ended when it stopped).
    if (ev.state === "running" && ev.action === "start") { startLogs(true); startStats(true); }
  });

  // Actions without leaving the page: the new state arrives as an event.
  box.addEventListener("click", (e) => {
    const b = e.target.closest("button[formaction]");
    if (!b || b.classList.contains("danger") || e.defaultPrevented) return;
    e.preventDefault();
    const form = b.form;
    const body = new FormData(form);
    b.disabled = true;
    b.setAttribute("aria-busy", "true");
    fetch(b.formAction, { method: "POST", body, credentials: "same-origin",
                          headers: { "HX-Request": "true" } })
      .then(async (r) => {
        if (!r.ok) showError(await r.text());
      })
      .catch(() => showError("network error"))
      .finally(() => { b.disabled = false; b.removeAttribute("aria-busy"); });
  });
  function showError(text) {
    let box = document.getElementById("action-error");
    if (!box) {
      box = document.createElement("p");
      box.id = "action-error";
      box.className = "msg error";
      box.setAttribute("role", "alert");
      document.getElementById("container").after(box);
    }
    box.textContent = text;
  }

  // --- tabs (arrow keys move between them) --------------------------------------------------
  const tabs = Array.from(document.querySelectorAll("[role=tab]"));
  function select(tab) {
    tabs.forEach((t) => {
      const on = t === tab;
      t.setAttribute("aria-selected", on ? "true" : "false");
      t.tabIndex = on ? 0 : -1;
      document.getElementById("tab-" + t.dataset.tab).hidden = !on;
    });
    if (tab.dataset.tab === "stats") startStats();
    if (tab.dataset.tab === "terminal") openTerminal();
  }
  tabs.forEach((t, i) => {
    t.addEventListener("click", () => select(t));
    t.addEventListener("keydown", (e) => {
      if (e.key === "ArrowRight" || e.key === "ArrowLeft") {
        const next = tabs[(i + (e.key === "ArrowRight" ? 1 : tabs.length - 1)) % tabs.length];
        next.focus(); next.click();
      }
    });
  });

  // --- logs --------------------------------------------------------------------------------
  const logs = document.getElementById("logs");
  const search = document.getElementById("log-search");
  const count = document.getElementById("log-count");
  let logSocket = null;
  const MAX_LINES = 5000;
  function matches(line) {
    const q = search.value.trim().toLowerCase();
    return !q || line.textContent.toLowerCase().includes(q);
  }
  // Colours carry over from one line to the next, as in a terminal (one state per stream).
  let ansiStates = {};
  function appendLog(entry) {
    const line = document.createElement("span");
    line.className = "line" + (entry.s === "stderr" ? " err" : "");
    const stream = entry.s === "stderr" ? "stderr" : "stdout";
    ansiStates[stream] = window.estibaAnsi.render(line, entry.t, ansiStates[stream]);
    line.hidden = !matches(line);
    const stick = logs.scrollTop + logs.clientHeight >= logs.scrollHeight - 20;
    logs.appendChild(line);
    while (logs.childElementCount > MAX_LINES) logs.firstElementChild.remove();
    if (stick) logs.scrollTop = logs.scrollHeight;
  }
  function startLogs(again) {
    if (logSocket && logSocket.readyState <= 1) {
      if (!again) return;
      logSocket.onmessage = null;
      logSocket.close();
    }
    // The stream starts with the log so far (all runs): it replaces what is shown.
    if (again) { logs.replaceChildren(); ansiStates = {}; }
    const socket = new WebSocket(wsUrl(logs.dataset.ws));
    logSocket = socket;
    socket.onmessage = (m) => {
      const msg = JSON.parse(m.data);
      if (msg.lines) msg.lines.forEach(appendLog);
      if (msg.error) appendLog({ s: "stderr", t: "[" + msg.error + "]\n" });
      if (msg.end) socket.close();      // the container stopped: a start opens a new stream
    };
  }
  search.addEventListener("input", () => {
    let n = 0;
    logs.querySelectorAll(".line").forEach((l) => { l.hidden = !matches(l); if (!l.hidden) n++; });
    count.textContent = search.value ? String(n) : "";
  });
  startLogs();

  // --- stats -------------------------------------------------------------------------------
  let statsSocket = null;
  const charts = {};
  const POINTS = 60;
  function chart(canvasId, label, max) {
    const ctx = document.getElementById(canvasId);
    const options = { animation: false, responsive: true, maintainAspectRatio: false,
      scales: { x: { display: false }, y: { beginAtZero: true } }, plugins: { legend: { display: false } } };
    if (max) options.scales.y.max = max;
    return new window.Chart(ctx, { type: "line", options,
      data: { labels: [], datasets: [{ label, data: [], borderWidth: 2, pointRadius: 0, fill: true }] } });
  }
  function push(c, value) {
    c.data.labels.push("");
    c.data.datasets[0].data.push(value);
    if (c.data.labels.length > POINTS) { c.data.labels.shift(); c.data.datasets[0].data.shift(); }
    c.update();
  }
  const mib = (b) => (b / 1048576).toFixed(1) + " MiB";
  function startStats(again) {
    if (again && !charts.cpu) return;   // the stats tab was never opened: it starts them
    if (statsSocket && statsSocket.readyState <= 1) {
      if (!again) return;
      statsSocket.onmessage = null;
      statsSocket.close();
    }
    if (!window.Chart) return;
    if (!charts.cpu) {
      const memLimit = parseInt(box.dataset.memLimit, 10) || 0;
      const pidsLimit = parseInt(box.dataset.pidsLimit, 10) || 0;
      charts.cpu = chart("chart-cpu", "CPU %");
      charts.mem = chart("chart-mem", "MiB", memLimit ? memLimit / 1048576 : 0);
      charts.pids = chart("chart-pids", "pids", pidsLimit > 0 ? pidsLimit : 0);
    }
    const note = document.getElementById("stats-note");
    note.textContent = "";
    const socket = new WebSocket(wsUrl(`/ws/containers/${id}/stats/`));
    statsSocket = socket;
    socket.onmessage = (m) => {
      const msg = JSON.parse(m.data);
      if (msg.error) { note.textContent = msg.error; return; }
      if (msg.end) { note.textContent = note.dataset.stopped; socket.close(); return; }
      const s = msg.stats;
      push(charts.cpu, s.cpu);
      push(charts.mem, s.mem / 1048576);
      push(charts.pids, s.pids);
      document.getElementById("cpu-now").textContent = s.cpu.toFixed(1) + " %";
      document.getElementById("mem-now").textContent =
        mib(s.mem) + (s.mem_limit && s.mem_limit < 2 ** 62 ? " / " + mib(s.mem_limit) : "");
      document.getElementById("pids-now").textContent =
        s.pids + (s.pids_limit > 0 ? " / " + s.pids_limit : "");
    };
  }

  // --- terminal ----------------------------------------------------------------------------
  const termEl = document.getElementById("terminal");
  let term = null;
  let termSocket = null;
  function openTerminal() {
    if (!termEl || !window.Terminal) return;
    if (termSocket && termSocket.readyState <= 1) { term.focus(); return; }
    if (!term) {
      term = new window.Terminal({ fontSize: 16, cursorBlink: true, scrollback: 5000 });
      const fit = new window.FitAddon.FitAddon();
      term.loadAddon(fit);
      term.open(termEl);
      fit.fit();
      window.addEventListener("resize", () => fit.fit());
      term.onData((d) => {
        if (termSocket && termSocket.readyState === 1) termSocket.send(new TextEncoder().encode(d));
      });
      term.onResize(({ rows, cols }) => {
        if (termSocket && termSocket.readyState === 1) termSocket.send(JSON.stringify({ resize: [rows, cols] }));
      });
      window.estibaTerminal = term;
    }
    termSocket = new WebSocket(wsUrl(`${termEl.dataset.ws}?rows=${term.rows}&cols=${term.cols}`));
    termSocket.binaryType = "arraybuffer";
    termSocket.onopen = () => { termEl.dataset.ready = "1"; term.focus(); };
    termSocket.onmessage = (m) => {
      if (typeof m.data === "string") {
        const msg = JSON.parse(m.data);
        if (msg.error) term.write("\r\n\x1b[31m" + msg.error + "\x1b[0m\r\n");
        if ("exit" in msg) term.write("\r\n[" + termEl.dataset.ended + "]\r\n");
      } else {
        term.write(new Uint8Array(m.data));
      }
    };
  }
  const openBtn = document.getElementById("term-open");
  if (openBtn) openBtn.addEventListener("click", openTerminal);
})();
