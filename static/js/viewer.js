// Image viewer on a canvas: window/level, zoom, pan, invert, reset.
//
// The viewer works on the 8-bit display rendition (PNG) the server made at import, not on the
// original DICOM values: window/level re-maps the rendition's grey levels 0–255 (a window of
// centre 128 and width 256 is the image as stored). That is enough to bring out contrast in a
// region; it cannot recover detail that the rendition's own window clipped.
//
//   left drag            window/level (right–left: width, up–down: level)
//   Shift+drag, middle   pan
//   wheel                zoom about the pointer
//   double-click         reset
// Toolbar: presets, invert, reset. State is mirrored in data-* attributes (for tests).
//
// Linking (reader.js): onChange(fn) calls fn(viewer, windowChanged) after every change a user makes;
// setState(state, {window, zoom}) applies another viewer's window/invert and/or zoom/pan without
// calling the listeners back. Pan travels as a fraction of the canvas size, so viewers of different
// sizes show the same part of the image.
//
// Overlay (optional, setOverlay/showOverlay): a second image, e.g. a saliency map, shown over the
// canvas instead of the image while it is on. It is not windowed, zoomed or panned (it is its own
// picture: the image as a network sees it, cropped), and it is only fetched when first shown.
(function () {
  "use strict";

  var PRESETS = [
    { name: "As stored", center: 128, width: 256 },
    { name: "More contrast", center: 128, width: 128 },
    { name: "Dark regions", center: 64, width: 128 },
    { name: "Bright regions", center: 192, width: 128 },
  ];
  var MIN_ZOOM = 0.5, MAX_ZOOM = 12;

  function Viewer(el) {
    this.el = el;
    this.canvas = document.createElement("canvas");
    this.canvas.className = "viewer-canvas";
    this.canvas.setAttribute("role", "img");
    this.canvas.setAttribute("aria-label", el.getAttribute("data-label") || "Image");
    this.base = document.createElement("canvas");  // the rendition as loaded
    this.shown = document.createElement("canvas"); // after window/level and invert
    this.pixels = null;
    this.state = Viewer.initialState();
    this.listeners = [];
    this.loadListeners = [];
    this.silent = false;
    this.buildTools();
    el.appendChild(this.canvas);
    this.bindPointer();
    var self = this;
    if (window.ResizeObserver) {
      new ResizeObserver(function () { self.draw(); }).observe(el);
    } else {
      window.addEventListener("resize", function () { self.draw(); });
    }
    if (el.getAttribute("data-src")) { this.load(el.getAttribute("data-src")); }
  }

  Viewer.initialState = function () {
    return { center: 128, width: 256, invert: false, zoom: 1, panX: 0, panY: 0 };
  };

  Viewer.prototype.buildTools = function () {
    var self = this;
    var bar = document.createElement("div");
    bar.className = "viewer-tools";
    var select = document.createElement("select");
    select.setAttribute("aria-label", "Window preset");
    select.className = "preset";
    PRESETS.forEach(function (p, i) {
      var opt = document.createElement("option");
      opt.value = String(i);
      opt.textContent = p.name;
      select.appendChild(opt);
    });
    select.addEventListener("change", function () { self.preset(Number(select.value)); select.blur(); });
    bar.appendChild(select);
    bar.appendChild(this.button("Invert", "invert", function () { self.toggleInvert(); }));
    bar.appendChild(this.button("Reset", "reset", function () { self.reset(); }));
    this.readout = document.createElement("span");
    this.readout.className = "readout";
    bar.appendChild(this.readout);
    this.presetSelect = select;
    this.el.appendChild(bar);
  };

  Viewer.prototype.button = function (text, cls, onClick) {
    var b = document.createElement("button");
    b.type = "button";
    b.textContent = text;
    b.className = cls;
    b.tabIndex = -1;
    b.addEventListener("click", function (e) { e.stopPropagation(); onClick(); b.blur(); });
    return b;
  };

  Viewer.prototype.load = function (src) {
    var self = this;
    var img = new Image();
    this.pixels = null;
    this.loading = src;
    this.el.classList.add("loading");
    img.onload = function () {
      if (self.loading !== src) { return; }
      self.base.width = self.shown.width = img.naturalWidth;
      self.base.height = self.shown.height = img.naturalHeight;
      var ctx = self.base.getContext("2d", { willReadFrequently: true });
      ctx.drawImage(img, 0, 0);
      self.pixels = ctx.getImageData(0, 0, img.naturalWidth, img.naturalHeight);
      self.el.classList.remove("loading");
      self.el.setAttribute("data-loaded", "1");
      // A new image starts from the default view without telling linked viewers (they keep theirs);
      // onLoad listeners may then hand it the linked state.
      self.silent = true;
      try { self.reset(); } finally { self.silent = false; }
      self.loadListeners.forEach(function (fn) { fn(self); });
    };
    img.onerror = function () { self.el.classList.add("failed"); };
    img.src = src;
  };

  // Grey-level mapping: a 256-entry lookup table from centre/width (and invert).
  Viewer.prototype.applyWindow = function () {
    if (!this.pixels) { return; }
    var s = this.state, lut = new Uint8ClampedArray(256), lo = s.center - s.width / 2, i;
    for (i = 0; i < 256; i++) {
      var v = ((i - lo) / s.width) * 255;
      lut[i] = s.invert ? 255 - v : v;
    }
    var src = this.pixels.data, out = new ImageData(this.pixels.width, this.pixels.height), dst = out.data;
    for (i = 0; i < src.length; i += 4) {
      dst[i] = lut[src[i]]; dst[i + 1] = lut[src[i + 1]]; dst[i + 2] = lut[src[i + 2]]; dst[i + 3] = 255;
    }
    this.shown.getContext("2d").putImageData(out, 0, 0);
  };

  Viewer.prototype.draw = function () {
    var c = this.canvas, dpr = window.devicePixelRatio || 1;
    var w = Math.max(1, Math.round(c.clientWidth * dpr)), h = Math.max(1, Math.round(c.clientHeight * dpr));
    if (c.width !== w || c.height !== h) { c.width = w; c.height = h; }
    this.placeOverlay();
    var ctx = c.getContext("2d");
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, w, h);
    if (!this.pixels) { return; }
    var s = this.state, iw = this.shown.width, ih = this.shown.height;
    var scale = Math.min(w / iw, h / ih) * s.zoom;
    var x = (w - iw * scale) / 2 + s.panX * dpr, y = (h - ih * scale) / 2 + s.panY * dpr;
    ctx.imageSmoothingEnabled = scale < 2;
    ctx.drawImage(this.shown, x, y, iw * scale, ih * scale);
  };

  // The overlay image of this viewer (null: none); shown when showOverlay(true) is in force.
  Viewer.prototype.setOverlay = function (src, label) {
    if (!this.overlay) {
      this.overlay = document.createElement("img");
      this.overlay.className = "viewer-overlay";
      this.overlay.draggable = false;
      this.overlay.hidden = true;
      this.el.appendChild(this.overlay);
    }
    this.overlay.alt = label || "Overlay";
    this.overlaySrc = src || null;
    if (this.overlay.getAttribute("src") && this.overlay.getAttribute("src") !== this.overlaySrc) {
      this.overlay.removeAttribute("src");
    }
    this.showOverlay(this.overlayOn);
  };

  Viewer.prototype.showOverlay = function (on) {
    this.overlayOn = !!on;
    if (!this.overlay) { return; }
    var show = this.overlayOn && !!this.overlaySrc;
    if (show && this.overlay.getAttribute("src") !== this.overlaySrc) { this.overlay.src = this.overlaySrc; }
    this.overlay.hidden = !show;
    this.el.setAttribute("data-overlay", show ? "1" : "0");
    this.placeOverlay();
  };

  // Cover exactly the canvas (below the toolbar, whose height depends on the width).
  Viewer.prototype.placeOverlay = function () {
    if (!this.overlay || this.overlay.hidden) { return; }
    this.overlay.style.top = this.canvas.offsetTop + "px";
    this.overlay.style.height = this.canvas.offsetHeight + "px";
  };

  Viewer.prototype.update = function (windowChanged) {
    var s = this.state;
    if (windowChanged) { this.applyWindow(); }
    this.draw();
    this.readout.textContent = "W " + Math.round(s.width) + " · L " + Math.round(s.center) +
      (s.zoom !== 1 ? " · " + s.zoom.toFixed(1) + "×" : "") + (s.invert ? " · inv" : "");
    this.el.setAttribute("data-window", Math.round(s.center) + "/" + Math.round(s.width));
    this.el.setAttribute("data-zoom", s.zoom.toFixed(2));
    this.el.setAttribute("data-pan", Math.round(s.panX) + "," + Math.round(s.panY));
    this.el.setAttribute("data-inverted", s.invert ? "1" : "0");
    if (!this.silent) {
      var self = this;
      this.listeners.forEach(function (fn) { fn(self, !!windowChanged); });
    }
  };

  Viewer.prototype.onChange = function (fn) { this.listeners.push(fn); };
  Viewer.prototype.onLoad = function (fn) { this.loadListeners.push(fn); };

  // Pan as a fraction of the canvas (what a linked viewer of another size needs).
  Viewer.prototype.relativeState = function () {
    var s = this.state, w = this.canvas.clientWidth || 1, h = this.canvas.clientHeight || 1;
    return { center: s.center, width: s.width, invert: s.invert, zoom: s.zoom, panX: s.panX / w, panY: s.panY / h };
  };

  Viewer.prototype.setState = function (rel, parts) {
    var s = this.state, windowChanged = false;
    if (parts.window && (s.center !== rel.center || s.width !== rel.width || s.invert !== rel.invert)) {
      s.center = rel.center; s.width = rel.width; s.invert = rel.invert;
      windowChanged = true;
      var match = PRESETS.findIndex(function (p) { return p.center === rel.center && p.width === rel.width; });
      this.presetSelect.value = match >= 0 ? String(match) : "";
    }
    if (parts.zoom) {
      s.zoom = rel.zoom;
      s.panX = rel.panX * (this.canvas.clientWidth || 1);
      s.panY = rel.panY * (this.canvas.clientHeight || 1);
    }
    this.silent = true;
    try { this.update(windowChanged); } finally { this.silent = false; }
  };

  Viewer.prototype.setWindow = function (center, width) {
    this.state.center = Math.max(-128, Math.min(384, center));
    this.state.width = Math.max(2, Math.min(512, width));
    this.update(true);
  };

  Viewer.prototype.preset = function (i) {
    var p = PRESETS[i] || PRESETS[0];
    this.setWindow(p.center, p.width);
  };

  Viewer.prototype.toggleInvert = function () {
    this.state.invert = !this.state.invert;
    this.update(true);
  };

  Viewer.prototype.reset = function () {
    this.state = Viewer.initialState();
    this.presetSelect.value = "0";
    this.update(true);
  };

  Viewer.prototype.zoomAt = function (factor, cx, cy) {
    var s = this.state, z = Math.max(MIN_ZOOM, Math.min(MAX_ZOOM, s.zoom * factor)), k = z / s.zoom;
    var rect = this.canvas.getBoundingClientRect();
    var ox = cx - rect.width / 2, oy = cy - rect.height / 2;  // pointer relative to the centre
    s.panX = ox - (ox - s.panX) * k;
    s.panY = oy - (oy - s.panY) * k;
    s.zoom = z;
    this.update(false);
  };

  Viewer.prototype.bindPointer = function () {
    var self = this, c = this.canvas, drag = null;
    c.addEventListener("pointerdown", function (e) {
      if (!self.pixels) { return; }
      var pan = e.button === 1 || e.shiftKey;
      if (e.button !== 0 && !pan) { return; }
      e.preventDefault();
      c.setPointerCapture(e.pointerId);
      drag = { pan: pan, x: e.clientX, y: e.clientY, s: Object.assign({}, self.state) };
      self.el.classList.add(pan ? "panning" : "windowing");
    });
    c.addEventListener("pointermove", function (e) {
      if (!drag) { return; }
      var dx = e.clientX - drag.x, dy = e.clientY - drag.y;
      if (drag.pan) {
        self.state.panX = drag.s.panX + dx;
        self.state.panY = drag.s.panY + dy;
        self.update(false);
      } else {
        self.setWindow(drag.s.center - dy, drag.s.width + dx);
      }
    });
    function end() {
      drag = null;
      self.el.classList.remove("panning", "windowing");
    }
    c.addEventListener("pointerup", end);
    c.addEventListener("pointercancel", end);
    c.addEventListener("wheel", function (e) {
      if (!self.pixels) { return; }
      e.preventDefault();
      var rect = c.getBoundingClientRect();
      self.zoomAt(Math.exp(-e.deltaY * 0.0015), e.clientX - rect.left, e.clientY - rect.top);
    }, { passive: false });
    c.addEventListener("dblclick", function () { self.reset(); });
    c.addEventListener("contextmenu", function (e) { e.preventDefault(); });
  };

  window.CbirViewer = Viewer;
})();
