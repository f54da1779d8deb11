// The lessons' live parts: teacher mode, websockets, small charts. No libraries.
(function () {
  "use strict";
  const root = document.querySelector(".lesson");
  if (!root) return;
  const lesson = root.dataset.lesson;
  const ref = root.dataset.ref;
  const dataNode = document.getElementById("lesson-data");
  const data = dataNode ? JSON.parse(dataNode.textContent) : null;
  const $ = (sel) => document.querySelector(sel);
  const csrf = () => (document.querySelector("input[name=csrfmiddlewaretoken]") || {}).value || "";
  const wsURL = (path) => (location.protocol === "https:" ? "wss://" : "ws://") + location.host + path;
  const bytes = (n) => {
    if (n === null || n === undefined) return "—";
    const u = ["B", "KiB", "MiB", "GiB"]; let i = 0;
    while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
    return (i ? n.toFixed(1) : n) + " " + u[i];
  };
  const el = (tag, attrs, text) => {
    const e = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([k, v]) => e.setAttribute(k, v));
    if (text !== undefined) e.textContent = text;
    return e;
  };

  // --- teacher mode: one idea per screen, arrow keys to step ---------------------------
  const steps = Array.from(document.querySelectorAll(".steps .step"));
  let current = 0;
  function show(i) {
    if (!steps.length) return;
    current = Math.max(0, Math.min(steps.length - 1, i));
    steps.forEach((s, j) => s.classList.toggle("on", j === current));
    const count = $(".step-count");
    if (count) count.textContent = (current + 1) + " / " + steps.length;
  }
  show(0);
  document.addEventListener("keydown", (ev) => {
    if (["INPUT", "TEXTAREA", "SELECT"].includes(document.activeElement.tagName)) return;
    if (ev.key === "ArrowRight" || ev.key === "PageDown" || ev.key === " ") { show(current + 1); ev.preventDefault(); }
    if (ev.key === "ArrowLeft" || ev.key === "PageUp") { show(current - 1); ev.preventDefault(); }
  });

  // --- a websocket that says what it got -------------------------------------------------
  function live(path, onMessage, statusNode) {
    const ws = new WebSocket(wsURL(path));
    ws.onmessage = (ev) => {
      const msg = JSON.parse(ev.data);
      if (msg.error && statusNode) { statusNode.textContent = msg.error; statusNode.classList.add("error"); }
      onMessage(msg);
    };
    return ws;
  }

  // --- 1. layers -------------------------------------------------------------------------
  if (lesson === "layers" && data) {
    const tree = $("#layer-tree");
    const filter = $("#tree-filter");
    let selected = data.layers.length - 1;
    function drawTree() {
      tree.replaceChildren();
      const q = (filter.value || "").toLowerCase();
      const entries = data.layers[selected].entries.filter((e) => !q || e.path.toLowerCase().includes(q));
      entries.slice(0, 1500).forEach((e) => {
        const li = el("li", { class: e.status + " " + e.kind, "data-path": e.path });
        li.append(el("code", {}, e.path), el("span", { class: "size" }, e.kind === "file" ? bytes(e.size) : ""));
        tree.append(li);
      });
      document.querySelectorAll("#layer-stack li").forEach((li) =>
        li.classList.toggle("selected", Number(li.dataset.layer) === selected));
    }
    document.querySelectorAll("#layer-stack li").forEach((li) => {
      const pick = () => { selected = Number(li.dataset.layer); drawTree(); };
      li.addEventListener("click", pick);
      li.addEventListener("keydown", (ev) => { if (ev.key === "Enter") pick(); });
    });
    filter.addEventListener("input", drawTree);
    drawTree();
    const which = $("#which-layer");
    which.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const out = $("#which-answer");
      const r = await fetch(which.dataset.url + "?path=" + encodeURIComponent($("#which-path").value));
      const body = await r.json();
      if (body.error) { out.textContent = body.error; return; }
      out.textContent = body.layer === null ? out.dataset.none : out.dataset.layer + " " + (body.layer + 1) +
        ": " + data.layers[body.layer].created_by;
      if (body.layer !== null) { selected = body.layer; drawTree(); }
    });
  }

  // --- 2. union filesystem: live copy-ups ---------------------------------------------------
  if (lesson === "union" && data) {
    const list = $("#upper-files");
    const status = $("#watch-status");
    const labels = {};
    ($("#kind-labels") || { content: { querySelectorAll: () => [] } }).content
      .querySelectorAll("span").forEach((s) => { labels[s.dataset.k] = s.textContent; });
    live("/ws/lessons/union/" + ref + "/", (msg) => {
      if (msg.watching) status.textContent = status.dataset.watching;
      if (msg.stopped) status.textContent = status.dataset.stopped;
      (msg.changes || []).forEach((c) => {
        if (c.dir && c.kind !== "whiteout") return;
        let li = list.querySelector('li[data-path="' + CSS.escape(c.path) + '"]');
        if (!li) { li = el("li", { "data-path": c.path }); list.prepend(li); }
        // a copy-up stays a copy-up (and a new file new) when it is written again
        const kind = (c.kind === "written" || c.kind === "attrib") && li.dataset.first ? li.dataset.first : c.kind;
        li.dataset.first = kind;
        li.className = kind + " fresh";
        li.replaceChildren(el("code", {}, c.path), document.createTextNode(" "),
          el("span", { class: "tag" }, labels[kind] || kind));
        setTimeout(() => li.classList.remove("fresh"), 1500);
      });
    }, status);
    const filter = $("#merged-filter");
    filter.addEventListener("input", () => {
      const q = filter.value.toLowerCase();
      document.querySelectorAll("#merged-table tbody tr").forEach((tr) => {
        tr.hidden = q && !tr.dataset.path.toLowerCase().includes(q);
      });
    });
  }

  // --- 3. namespaces: the experiment ---------------------------------------------------------
  document.querySelectorAll("[data-exp]").forEach((button) => {
    button.addEventListener("click", async () => {
      button.disabled = true;
      const body = new URLSearchParams({ name: button.dataset.exp });
      const r = await fetch("/lessons/experiment/", { method: "POST", body,
        headers: { "X-CSRFToken": csrf() } });
      const res = await r.json();
      button.disabled = false;
      document.querySelector(".exp-out").hidden = false;
      if (res.error) { $("#exp-without").textContent = res.error; return; }
      $("#exp-without-cmd").textContent = "$ " + res.without.command;
      $("#exp-with-cmd").textContent = "$ " + res.with.command;
      $("#exp-without").textContent = res.without.output;
      $("#exp-with").textContent = res.with.output;
    });
  });

  // --- 4. cgroups: charts against the limits, the OOM kill -------------------------------------
  if (lesson === "cgroups" && data) {
    const series = { memory: [], cpu: [], pids: [] };
    const unlimited = $("#charts").dataset.unlimited;
    let ooms = data.memory.oom_kills || 0;
    function draw(name, values, limit) {
      const c = document.getElementById("chart-" + name);
      const g = c.getContext("2d");
      g.clearRect(0, 0, c.width, c.height);
      const top = Math.max(limit || 0, ...values, 1) * 1.1;
      if (limit) {
        const y = c.height - (limit / top) * c.height;
        g.strokeStyle = "#c0392b"; g.setLineDash([6, 4]); g.beginPath(); g.moveTo(0, y); g.lineTo(c.width, y); g.stroke();
        g.setLineDash([]);
      }
      g.strokeStyle = "#1f6feb"; g.lineWidth = 2; g.beginPath();
      values.forEach((v, i) => {
        const x = (i / 119) * c.width, y = c.height - (v / top) * c.height;
        i ? g.lineTo(x, y) : g.moveTo(x, y);
      });
      g.stroke();
    }
    const push = (arr, v) => { arr.push(v || 0); if (arr.length > 120) arr.shift(); };
    live("/ws/lessons/cgroups/" + ref + "/", (s) => {
      if (!s.memory) return;
      push(series.memory, s.memory.usage); push(series.cpu, s.cpu_percent); push(series.pids, s.pids.current);
      draw("memory", series.memory, s.memory.limit);
      const quota = s.cpu.quota_us && s.cpu.period_us ? (100 * s.cpu.quota_us) / s.cpu.period_us : null;
      draw("cpu", series.cpu, quota);
      draw("pids", series.pids, s.pids.limit);
      $("#mem-now").textContent = bytes(s.memory.usage);
      $("#mem-limit").textContent = s.memory.limit ? bytes(s.memory.limit) : unlimited;
      $("#cpu-now").textContent = s.cpu_percent === null ? "—" : s.cpu_percent.toFixed(1) + " %";
      $("#cpu-limit").textContent = quota ? "/ " + quota.toFixed(0) + " %" : "";
      $("#pids-now").textContent = s.pids.current ?? "—";
      $("#pids-limit").textContent = s.pids.limit ?? unlimited;
      if ((s.memory.oom_kills || 0) > ooms) {
        ooms = s.memory.oom_kills;
        const p = $("#oom"); p.classList.add("killed");
        $("#oom-count").textContent = ooms;
        p.firstChild.textContent = p.dataset.text + " ";
      }
    }, $("#oom"));
    $("#hog").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const r = await fetch($("#hog").dataset.url, { method: "POST", headers: { "X-CSRFToken": csrf() } });
      const res = await r.json();
      if (res.error) $("#oom").textContent = res.error;
    });
  }

  // --- 5. VM vs container: measured at the press of a button --------------------------------
  if (lesson === "vm") {
    const form = $("#measure");
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const status = $("#measure-status");
      $("#measure-button").disabled = true;
      status.textContent = status.dataset.running;
      const post = (url) => fetch(url, { method: "POST", headers: { "X-CSRFToken": csrf() } }).then((r) => r.json());
      const [ct, vm] = await Promise.all([post(form.dataset.container), post(form.dataset.vm)]);
      $("#measure-button").disabled = false;
      status.textContent = [ct.error, vm.error].filter(Boolean).join(" · ");
      if (!vm.error) {
        $("#vm-boot").textContent = vm.boot_seconds.toFixed(2) + " s";
        $("#vm-mem").textContent = bytes(vm.memory_kb * 1024);
        $("#vm-disk").textContent = bytes(vm.disk_bytes);
        $("#vm-accel").textContent = vm.label + " · " + vm.kernel;
        $("#vm-console").hidden = false; $("#vm-console").textContent = vm.console;
        $("#vm-boot").dataset.seconds = vm.boot_seconds;
      }
      if (!ct.error) {
        $("#ct-start").textContent = (ct.start_seconds * 1000).toFixed(0) + " ms";
        $("#ct-mem").textContent = bytes(ct.memory_bytes);
        $("#ct-disk").textContent = bytes(ct.image_bytes);
        $("#ct-runtime").textContent = ct.runtime;
      }
    });
  }

  // --- 6. architecture in motion -----------------------------------------------------------
  if (lesson === "architecture") {
    const status = $("#arch-status");
    status.textContent = status.dataset.waiting;
    const log = $("#arch-log tbody");
    const route = (kind, action) => {
      const path = ["n-client", "e-client-api", "n-api", "e-api-daemon", "n-daemon"];
      if (kind === "image" && ["pull", "push"].includes(action)) path.push("e-daemon-registry", "n-registry");
      if (kind === "image" || kind === "build") path.push("e-daemon-images", "n-images");
      if (kind === "container" || kind === "exec") path.push("e-daemon-containers", "n-containers");
      if (kind === "volume" || kind === "network") path.push("e-daemon-volumes", "n-volumes");
      return path;
    };
    function light(path) {
      path.forEach((id, i) => setTimeout(() => {
        const n = document.getElementById(id);
        if (!n) return;
        n.classList.add("lit");
        setTimeout(() => n.classList.remove("lit"), 1200);
      }, i * 120));
    }
    // A request says which components it reaches ("api", "daemon", "images", ...).
    const via = (reached) => {
      const path = ["n-client", "e-client-api"];
      let from = "api";
      reached.forEach((c) => {
        if (c !== "api") path.push("e-" + from + "-" + c);
        path.push("n-" + c);
        if (c === "api" || c === "daemon") from = c;
      });
      return path;
    };
    const clientLabel = $("#client-label");
    live("/ws/lessons/architecture/", (msg) => {
      const ev = msg.event, rq = msg.request;
      if (!ev && !rq) return;
      const kind = ev ? ev.kind : rq.kind || "";
      const action = ev ? ev.action : rq.method + " " + rq.path;
      const path = rq && Array.isArray(rq.reaches) ? via(rq.reaches)
        : route(kind, ev ? ev.action : rq.action);
      light(path);
      if (rq && clientLabel) clientLabel.textContent = rq.client + (rq.user ? " · " + rq.user : "");
      const tr = el("tr", { class: "fresh" });
      if (rq) {
        tr.dataset.client = rq.client || "";
        tr.dataset.reaches = (rq.reaches || []).join(" ");
        if (rq.status) tr.dataset.status = rq.status;
      }
      const who = rq ? (rq.client || "") + (rq.user ? " (" + rq.user + ")" : "") : ev.host || "";
      const what = (kind ? kind + " " : "") + action + (rq && rq.status ? " → " + rq.status : "");
      tr.append(el("td", {}, new Date().toLocaleTimeString(document.documentElement.lang || undefined)), el("td", {}, who),
        el("td", {}, what), el("td", {}, (ev && (ev.name || (ev.id || "").slice(0, 12))) || ""));
      log.prepend(tr);
      while (log.children.length > 50) log.lastChild.remove();
    }, status);
  }

  // --- 7. from Dockerfile to layers -----------------------------------------------------------
  if (lesson === "build") {
    const stack = $("#build-stack");
    const out = $("#build-log");
    let ws = null, step = null;
    $("#build-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      stack.replaceChildren(); out.textContent = "";
      if (ws) ws.close();
      ws = live("/ws/lessons/build/", (msg) => {
        if (msg.line) {
          const text = msg.line.stream || msg.line.status || msg.line.error || "";
          out.textContent += text.endsWith("\n") ? text : text + "\n";
          out.scrollTop = out.scrollHeight;
          const m = /^Step (\d+)\/(\d+) : (.*)/.exec(text);
          if (m) {
            const word = m[3].trim().split(/\s+/)[0].toUpperCase();
            step = el("li", { class: "running", "data-instruction": word });
            step.append(el("code", { class: "made-by" }, m[3].trim()), el("span", { class: "tag" }, ""));
            stack.prepend(step);
            if (word === "FROM") { step.className = "base"; step.querySelector(".tag").textContent = stack.dataset.base; }
          } else if (step && /Using cache/.test(text)) {
            step.className = "cached"; step.querySelector(".tag").textContent = stack.dataset.cached;
          } else if (step && /^ ---> [0-9a-f]{6,}/.test(text) && step.className === "running") {
            const meta = !["RUN", "COPY", "ADD"].includes(step.dataset.instruction);
            step.className = meta ? "meta" : "new";
            step.querySelector(".tag").textContent = meta ? stack.dataset.meta : stack.dataset.new;
          }
        }
        if (msg.done && msg.layers) {
          out.textContent += stack.dataset.done + " " + (msg.image || "") + "\n";
        }
      }, out);
      ws.onopen = () => ws.send(JSON.stringify({ dockerfile: $("#dockerfile").value, no_cache: $("#no-cache").checked }));
    });
  }
})();
