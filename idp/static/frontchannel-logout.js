// Front-channel logout (idp.oidc.frontchannel, login/frontchannel_logout.html): load each
// client's logout page in a hidden frame, then go on to where the sign-out returns once every
// frame has loaded, or after the page's wait for a client that never answers. The frames are
// made here, their load listeners attached first, so that none can finish unseen; a browser
// without scripts gets them from the page's <noscript> and follows its "Continue" link.
(function () {
  var holder = document.getElementById("frontchannel-logout");
  if (!holder) {
    return;
  }
  var frames = JSON.parse(holder.getAttribute("data-frames") || "[]");
  var next = holder.getAttribute("data-continue");
  var waiting = frames.length;
  var gone = false;

  function goOn() {
    if (!gone && next) {
      gone = true;
      window.location.assign(next);
    }
  }

  frames.forEach(function (uri) {
    var frame = document.createElement("iframe");
    frame.hidden = true;
    frame.title = holder.getAttribute("data-frame-title") || "";
    frame.addEventListener("load", function () {
      waiting -= 1;
      if (waiting <= 0) {
        goOn();
      }
    });
    frame.src = uri;
    holder.appendChild(frame);
  });
  if (waiting <= 0) {
    goOn();
  }
  window.setTimeout(goOn, 1000 * Number(holder.getAttribute("data-wait-seconds") || "5"));
})();
