// Saliency overlays on thumbnails outside the reading room (the search page): one toggle lays every
// overlay PNG (img.saliency-overlay, positioned by reader.css's .tile rules) over its image, the
// query's included. Overlays are fetched only when first shown, like the reader's (reader.js).
// The button stays hidden when the page has no overlay; S toggles too, unless typing in a field.
(function () {
  "use strict";

  var button = document.getElementById("saliency-btn");
  var overlays = Array.prototype.slice.call(document.querySelectorAll("img.saliency-overlay"));
  if (!button || !overlays.length) { return; }
  var on = false;
  button.hidden = false;

  function set(value) {
    on = !!value;
    button.setAttribute("aria-pressed", on ? "true" : "false");
    button.classList.toggle("on", on);
    overlays.forEach(function (img) {
      if (on && !img.getAttribute("src")) { img.src = img.getAttribute("data-src"); }
      img.hidden = !on;
    });
  }

  button.addEventListener("click", function () { set(!on); });
  document.addEventListener("keydown", function (event) {
    var typing = /^(INPUT|TEXTAREA|SELECT)$/.test((event.target && event.target.tagName) || "");
    if (!typing && !event.ctrlKey && !event.metaKey && !event.altKey && (event.key === "s" || event.key === "S")) {
      set(!on);
    }
  });
})();
