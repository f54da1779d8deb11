// The containers list: each row follows its container's state live.
(function () {
  "use strict";
  const table = document.getElementById("containers");
  if (!table) return;
  const rows = document.getElementById("rows");
  // Each state's label in the page's language, as the server prints it in a row.
  const labelsEl = document.getElementById("state-labels");
  const labels = labelsEl ? JSON.parse(labelsEl.textContent) : {};

  function refresh() {
    fetch(table.dataset.refresh, { headers: { "HX-Request": "true" }, credentials: "same-origin" })
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

  const all = document.getElementById("all");
  if (all) {
    all.addEventListener("change", () => {
      rows.querySelectorAll("input[name=ids]").forEach((c) => { c.checked = all.checked; });
    });
  }
})();
