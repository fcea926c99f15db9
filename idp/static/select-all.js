// The users list's "select every member on this page" (templates/admin/users.html): a checkbox
// added to the selection column's header, for those with JavaScript only. The bulk form works
// without it (each row's own checkbox is a plain input of the form). It has no name, so it is never
// posted; its label is the page's, in its language, from the table's data-select-all.
// Served from 'self' (the CSP allows no inline script).
(function () {
  "use strict";
  document.querySelectorAll("table[data-select-all]").forEach(function (table) {
    var header = table.querySelector("thead th");
    var boxes = table.querySelectorAll("tbody input[type=checkbox][name=user]");
    if (!header || !boxes.length) { return; }
    var all = document.createElement("input");
    all.type = "checkbox";
    all.setAttribute("aria-label", table.getAttribute("data-select-all"));
    function reflect() {
      var ticked = Array.prototype.filter.call(boxes, function (box) { return box.checked; }).length;
      all.checked = ticked === boxes.length;
      all.indeterminate = ticked > 0 && ticked < boxes.length;
    }
    all.addEventListener("change", function () {
      boxes.forEach(function (box) { box.checked = all.checked; });
    });
    boxes.forEach(function (box) { box.addEventListener("change", reflect); });
    header.appendChild(all);  // beside the column's name ("Selected", for screen readers): kept
    reflect();
  });
}());
