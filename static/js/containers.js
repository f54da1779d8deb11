// The containers list: each row follows its container's state live.
(function () {
  "use strict";
  const table = document.getElementById("containers");
  if (!table) return;
  const rows = document.getElementById("rows");
  // Each state's label in the page's language, as the server prints it in a row.
  const labelsEl = document.getElementById("state-labels");
  const labels = labelsEl ? JSON.parse(labelsEl.textContent) : {};

  const filters = document.querySelector("form.filters");

  // The rows as the server renders them, under the filter shown now (it may have
  // changed in place since the page loaded).
  function refreshURL() {
    const url = new URL(table.dataset.refresh, location.href);
    if (filters) new FormData(filters).forEach((v, k) => url.searchParams.set(k, v));
    return url;
  }

  function refresh() {
    fetch(refreshURL(), { headers: { "HX-Request": "true" }, credentials: "same-origin" })
      .then((r) => (r.ok ? r.text() : Promise.reject(r.status)))
      .then((html) => { rows.innerHTML = html; })
      .catch(() => {});
  }

  document.addEventListener("estiba:event", (e) => {
    const ev = e.detail;
    if (ev.kind !== "container") return;
    const row = table.querySelector(`tr[data-id="${CSS.escape(ev.id)}"]`);
    if (ev.action === "destroy") { if (row) row.remove(); return; }
    if (!row) { refresh(); return; }
    row.dataset.state = ev.state;
    const st = row.querySelector("[data-field=state]");
    st.textContent = labels[ev.state] || ev.state;
    st.className = "state s-" + ev.state;
    const status = row.querySelector("[data-field=status]");
    if (status) status.textContent = ev.status;
  });
  // After a reconnect, events may have been missed: fetch the rows once.
  document.addEventListener("estiba:connected", (e) => { if (e.detail.again) refresh(); });

  // Bulk actions are sent in place: the rows change through the events they cause.
  const bulk = document.getElementById("bulk");
  let notes = null;  // the page's messages list, made on the first answer if it has none
  function messageList() {
    notes = notes || document.querySelector("ul.messages");
    if (!notes) {
      notes = document.createElement("ul");
      notes.className = "messages";
      notes.setAttribute("role", "status");
      bulk.before(notes);
    }
    return notes;
  }
  if (bulk) {
    bulk.addEventListener("submit", (e) => {
      e.preventDefault();
      const body = new FormData(bulk, e.submitter);
      const buttons = bulk.querySelectorAll(".bulk button");
      buttons.forEach((b) => { b.disabled = true; });
      bulk.setAttribute("aria-busy", "true");
      // (bulk.action would be the buttons named "action": read the attribute)
      fetch(bulk.getAttribute("action"), { method: "POST", body, credentials: "same-origin",
                           headers: { "HX-Request": "true" } })
        .then((r) => (r.ok ? r.json() : Promise.reject(r.status)))
        .then((answer) => {
          const levels = { 25: "success", 30: "warning", 40: "error" };
          if (answer.messages.length) {
            messageList().replaceChildren(...answer.messages.map((m) => {
              const li = document.createElement("li");
              li.className = "msg " + (levels[m.level] || "info");
              li.textContent = m.text;
              return li;
            }));
          }
          rows.querySelectorAll("input[name=ids]:checked").forEach((c) => { c.checked = false; });
          if (all) all.checked = false;
        })
        .catch(() => {  // the plain form post still works
          const action = document.createElement("input");
          Object.assign(action, { type: "hidden", name: "action", value: e.submitter ? e.submitter.value : "" });
          bulk.append(action);
          bulk.submit();
        })
        .finally(() => {
          buttons.forEach((b) => { b.disabled = false; });
          bulk.removeAttribute("aria-busy");
        });
    });
  }

  const all = document.getElementById("all");
  if (all) {
    all.addEventListener("change", () => {
      rows.querySelectorAll("input[name=ids]").forEach((c) => { c.checked = all.checked; });
    });
  }
})();
