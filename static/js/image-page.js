// Coordinators' and researchers' image page: the same viewer as the reading page (window/level,
// zoom, pan, invert), so that a 16×16 CR or a 128×128 CT is seen at a size one can judge.
(function () {
  "use strict";
  Array.prototype.forEach.call(document.querySelectorAll(".viewer[data-src]"), function (el) {
    new window.CbirViewer(el);
  });
})();
