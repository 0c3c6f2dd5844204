// tidesync operations page: the few things that need a script. Everything else is plain HTML
// drawn by the server; this file calls only /api/ and the page's own address.
"use strict";

(function () {
  const main = document.getElementById("main");

  // A list that shows something running or due refreshes itself (not while a form is in use).
  function refreshLoop() {
    const every = Number(main && main.dataset.refresh);
    if (!every) return;
    setTimeout(async function tick() {
      const busy = document.activeElement && document.activeElement.closest("form");
      if (!busy && !document.hidden) {
        try {
          const res = await fetch(location.href, { headers: { Accept: "text/html" } });
          if (res.ok) {
            const doc = new DOMParser().parseFromString(await res.text(), "text/html");
            const next = doc.getElementById("main");
            if (next) {
              main.replaceChildren(...next.childNodes);
              main.dataset.refresh = next.dataset.refresh || "";
            }
          }
        } catch (e) {
          /* the server is away for a moment: try again */
        }
      }
      if (Number(main.dataset.refresh)) setTimeout(tick, every * 1000);
    }, every * 1000);
  }

  // An instance's log follows the run: new lines are appended as text (never as HTML); when
  // the instance changes state the page is drawn again.
  function followLog() {
    const pre = document.getElementById("log");
    if (!pre || pre.dataset.live !== "1") return;
    const url = pre.dataset.follow;
    const state = pre.dataset.state;
    let offset = pre.dataset.offset;
    async function tick() {
      try {
        const q = offset === "" ? "" : "?offset=" + encodeURIComponent(offset);
        const res = await fetch(url + q, { headers: { Accept: "application/json" } });
        if (res.ok) {
          const got = await res.json();
          if (got.source === "store") {
            pre.textContent = got.text;
          } else if (got.text) {
            const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
            pre.append(document.createTextNode(got.text));
            if (atEnd) pre.scrollTop = pre.scrollHeight;
          }
          offset = got.offset === null ? "" : String(got.offset);
          if (got.state !== state) {
            location.replace(location.pathname);
            return;
          }
        }
      } catch (e) {
        /* try again */
      }
      setTimeout(tick, 1500);
    }
    setTimeout(tick, 1000);
  }

  refreshLoop();
  followLog();
})();
