// Reveals the "Copy" button next to freshly generated recovery codes (CSP forbids inline scripts).
(function () {
  "use strict";
  var button = document.querySelector("[data-copy-target]");
  if (!button || !navigator.clipboard) { return; }
  button.hidden = false;
  button.addEventListener("click", function () {
    var codes = document.getElementById(button.getAttribute("data-copy-target"));
    navigator.clipboard.writeText(codes.textContent);
  });
})();
