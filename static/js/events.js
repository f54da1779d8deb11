// The page's one event feed: a websocket to /ws/events/ that re-dispatches each
// engine event as a DOM event "estiba:event" (detail = the event). Pages listen
// for it; nothing polls. It reconnects with back-off and says so in the header.
(function () {
  "use strict";
  const live = document.getElementById("live");
  let ws = null;
  let delay = 500;
  let connectedOnce = false;

  function connect() {
    const proto = location.protocol === "https:" ? "wss" : "ws";
    ws = new WebSocket(`${proto}://${location.host}/ws/events/`);
    ws.onopen = () => {
      delay = 500;
      if (live) { live.textContent = live.dataset.on; live.classList.add("on"); }
      document.dispatchEvent(new CustomEvent("estiba:connected", { detail: { again: connectedOnce } }));
      connectedOnce = true;
    };
    ws.onmessage = (m) => {
      let ev;
      try { ev = JSON.parse(m.data); } catch (e) { return; }
      document.dispatchEvent(new CustomEvent("estiba:event", { detail: ev }));
    };
    ws.onclose = () => {
      if (live) { live.textContent = live.dataset.off; live.classList.remove("on"); }
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 10000);
    };
  }
  if (live) connect();

  // Buttons that ask first.
  document.addEventListener("click", (e) => {
    const b = e.target.closest("[data-confirm]");
    if (b && !window.confirm(b.dataset.confirm)) e.preventDefault();
  });

  // Pages with a simple table reload themselves when one of their objects changes,
  // unless they are already on their way elsewhere (a form sent, a link followed): the
  // reload would abort that navigation, and with it the answer to the user's own request
  // (the new volume's own event comes while the form that made it waits for its answer).
  let leaving = false;
  window.addEventListener("beforeunload", () => { leaving = true; });
  document.addEventListener("submit", (e) => { if (!e.defaultPrevented) leaving = true; });
  window.addEventListener("pageshow", () => { leaving = false; });  // back from the cache
  document.addEventListener("estiba:event", (e) => {
    const table = document.querySelector("table[data-reload][data-live-kind]");
    if (table && !leaving && e.detail.kind === table.dataset.liveKind &&
        e.detail.action !== "update") {
      window.location.reload();
    }
  });

  window.estiba = { socket: () => ws };
})();
