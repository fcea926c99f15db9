// Copy buttons (templates/_copy.html): a button [data-copy-target] copies its data-copy-text, else
// the text of the element it names, to the clipboard, then says so in its live region (role=status,
// aria-live=polite: read out by screen readers, shown to everyone). The words are the page's, in
// its language, from the button's data-copied and data-copy-failed: none here.
// Served from 'self' (the CSP allows no inline script). Without a clipboard (a page not served
// over HTTPS or from localhost) the button stays hidden: select and copy, or download.
(function () {
  "use strict";
  if (!navigator.clipboard || !navigator.clipboard.writeText) { return; }

  function say(status, text, failed) {
    if (!status) { return; }
    status.classList.toggle("error", failed);
    // Emptied first and filled a moment later: the same words twice ("Copied", then "Copied"
    // again) are a change, which a screen reader announces again.
    status.textContent = "";
    window.setTimeout(function () { status.textContent = text; }, 150);
  }

  document.querySelectorAll("[data-copy-target]").forEach(function (button) {
    if (button.hasAttribute("data-copy-ready")) { return; }  // the script is on the page once per button
    button.setAttribute("data-copy-ready", "");
    var status = document.getElementById(button.getAttribute("data-copy-status"));
    button.addEventListener("click", function () {
      var target = document.getElementById(button.getAttribute("data-copy-target"));
      var text = button.getAttribute("data-copy-text") || (target ? target.textContent.trim() : "");
      navigator.clipboard.writeText(text).then(
        function () { say(status, button.getAttribute("data-copied"), false); },
        function () { say(status, button.getAttribute("data-copy-failed"), true); });
    });
    button.hidden = false;
  });
})();
