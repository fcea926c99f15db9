/* Push wait: poll the status URL (~every 500 ms) and submit the page's form as soon as the
   answer is in (login: approved/denied/rejected; enrolment: registered/expired). Without
   JavaScript the "Continue" button does the same. Served from 'self' (CSP: no inline script). */
(function () {
  "use strict";
  var box = document.querySelector("[data-push-wait]");
  if (!box) { return; }
  var url = box.getAttribute("data-poll-url");
  var form = box.closest("form");
  if (!url || !form) { return; }
  var interval = 500, stopped = false;

  function submit() {
    if (stopped) { return; }
    stopped = true;
    if (form.requestSubmit) { form.requestSubmit(); } else { form.submit(); }
  }

  function tick() {
    if (stopped) { return; }
    fetch(url, {credentials: "same-origin", headers: {"Accept": "application/json"}, cache: "no-store"})
      .then(function (r) { return r.ok || r.status === 410 ? r.json() : {status: "pending"}; })
      .then(function (data) {
        var s = data && data.status;
        if (s && s !== "pending") { submit(); } else { setTimeout(tick, interval); }
      })
      .catch(function () { setTimeout(tick, interval * 2); });
  }
  setTimeout(tick, interval);
})();
