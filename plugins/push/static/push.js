/* Push wait: poll the status URL (~every 500 ms) and submit the page's form as soon as the
   answer is in (login: approved/denied/rejected, or restart: the page is to be loaded again, its
   challenge replaced by another tab of the login;
   enrolment: registered/expired). Without
   JavaScript the "Continue" button does the same. Served from 'self' (CSP: no inline script). */
(function () {
  "use strict";
  var box = document.querySelector("[data-push-wait]");
  if (!box) { return; }
  var url = box.getAttribute("data-poll-url");
  var form = box.closest("form");
  if (!url || !form) { return; }
  var interval = 500, stopped = false;
  // Submit at most once per challenge: if the server shows this same challenge again (it expired,
  // or was refused), the user reads the message instead of the page re-posting in a loop.
  var marker = "idp-push-submitted:" + (box.getAttribute("data-push-challenge") || url);
  var store = null;
  try { store = window.sessionStorage; } catch (e) { store = null; }
  if (store && store.getItem(marker)) { return; }

  function submit() {
    if (stopped) { return; }
    stopped = true;
    if (store) { try { store.setItem(marker, "1"); } catch (e) { /* private mode: no memory */ } }
    if (form.requestSubmit) { form.requestSubmit(); } else { form.submit(); }
  }

  function tick() {
    if (stopped) { return; }
    // `wait`: a status endpoint that long-polls answers as soon as the phone does; one that does
    // not simply ignores it and answers at once (then we ask again after `interval`).
    fetch(url + (url.indexOf("?") < 0 ? "?" : "&") + "wait=20", {credentials: "same-origin", headers: {"Accept": "application/json"}, cache: "no-store"})
      .then(function (r) { return r.ok || r.status === 410 ? r.json() : {status: "pending"}; })
      .then(function (data) {
        var s = data && data.status;
        if (s && s !== "pending") { submit(); } else { setTimeout(tick, interval); }
      })
      .catch(function () { setTimeout(tick, interval * 2); });
  }
  setTimeout(tick, interval);
})();
