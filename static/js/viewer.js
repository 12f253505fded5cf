// Image viewer on a canvas: window/level, zoom, pan, invert, reset — in the image's own units.
//
// Two sources, one viewer:
// * the 8-bit display rendition (PNG) every image has: the viewer paints it at once and its
//   window/level re-maps those 256 grey levels (centre 128 / width 256 is the image as stored);
// * for a DICOM image, the modality values (data-values: a 16-bit PNG of the rescaled values,
//   decoded by fast-png, vendored in static/vendor/) with their description (data-display: offset
//   and scale back to the values, units — HU for CT —, the file's VOI windows, MONOCHROME1, and the
//   window the rendition was made with). Once they are in, window/level works on the real values:
//   a CT can be re-windowed to lung or bone, the readout is in HU, and the presets are the
//   modality's (CT: lung, mediastinum, bone, brain; every modality: the file's windows and the full
//   range). The default view is the rendition's window, so the image does not change when the
//   values arrive.
//
//   left drag            window/level (right–left: width, up–down: level)
//   Shift+drag, middle   pan
//   wheel                zoom about the pointer
//   double-click         reset
// Toolbar: presets, invert, reset. State is mirrored in data-* attributes (for tests).
//
// Linking (reader.js): onChange(fn) calls fn(viewer, windowChanged) after every change a user makes;
// setState(state, {window, zoom}) applies another viewer's window/invert and/or zoom/pan without
// calling the listeners back. A window travels in the sender's units and as a window on the
// sender's rendition grey levels ("grey"), so viewers in other units (or 8-bit only) can follow.
// Pan travels as a fraction of the canvas size, so viewers of different sizes show the same part.
//
// Overlay (optional, setOverlay/showOverlay): a second image, e.g. a saliency map, shown over the
// canvas instead of the image while it is on. It is not windowed, zoomed or panned (it is its own
// picture: the image as a network sees it, cropped), and it is only fetched when first shown.
(function () {
  "use strict";

  var GREY_PRESETS = [
    { name: "As stored", center: 128, width: 256 },
    { name: "More contrast", center: 128, width: 128 },
    { name: "Dark regions", center: 64, width: 128 },
    { name: "Bright regions", center: 192, width: 128 },
  ];
  // Usual CT windows (centre/width in HU).
  var CT_PRESETS = [
    { name: "Lung", center: -600, width: 1500 },
    { name: "Mediastinum", center: 50, width: 350 },
    { name: "Bone", center: 300, width: 2000 },
    { name: "Brain", center: 40, width: 80 },
  ];
  var MIN_ZOOM = 0.5, MAX_ZOOM = 12;

  function parseDisplay(text) {
    if (!text) { return null; }
    try { return JSON.parse(text); } catch (e) { return null; }
  }

  function round(v) { return Math.round(v * 10) / 10; }

  function Viewer(el) {
    this.el = el;
    this.canvas = document.createElement("canvas");
    this.canvas.className = "viewer-canvas";
    this.canvas.setAttribute("role", "img");
    this.canvas.setAttribute("aria-label", el.getAttribute("data-label") || "Image");
    this.shown = document.createElement("canvas"); // after window/level and invert
    this.pixels = null;   // ImageData of the 8-bit rendition
    this.values = null;   // {raw: Uint16Array, width, height} once the modality values are in
    this.kind = "grey";   // "grey" (rendition levels) or "values" (modality units)
    this.display = null;
    this.presets = GREY_PRESETS;
    this.state = this.defaultState();
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
    if (el.getAttribute("data-src")) {
      this.load(el.getAttribute("data-src"), el.getAttribute("data-values"), parseDisplay(el.getAttribute("data-display")));
    }
  }

  Viewer.prototype.defaultState = function () {
    var s = { center: 128, width: 256, invert: false, zoom: 1, panX: 0, panY: 0 };
    if (this.kind === "values") { s.center = this.display.rendition.center; s.width = this.display.rendition.width; }
    return s;
  };

  Viewer.prototype.buildTools = function () {
    var self = this;
    var bar = document.createElement("div");
    bar.className = "viewer-tools";
    var select = document.createElement("select");
    select.setAttribute("aria-label", "Window preset");
    select.className = "preset";
    select.addEventListener("change", function () { if (select.value !== "") { self.preset(Number(select.value)); } select.blur(); });
    bar.appendChild(select);
    bar.appendChild(this.button("Invert", "invert", function () { self.toggleInvert(); }));
    bar.appendChild(this.button("Reset", "reset", function () { self.reset(); }));
    this.readout = document.createElement("span");
    this.readout.className = "readout";
    bar.appendChild(this.readout);
    this.presetSelect = select;
    this.el.appendChild(bar);
    this.fillPresets();
  };

  Viewer.prototype.fillPresets = function () {
    var select = this.presetSelect;
    select.textContent = "";
    this.presets.forEach(function (p, i) {
      var opt = document.createElement("option");
      opt.value = String(i);
      opt.textContent = p.name;
      select.appendChild(opt);
    });
    var custom = document.createElement("option");  // shown while the window matches no preset
    custom.value = "";
    custom.textContent = "Custom";
    custom.hidden = true;
    select.appendChild(custom);
  };

  // Presets in modality units: the rendition's window first (the default view), the file's own
  // windows, the modality's usual ones (CT), the full range of the values.
  Viewer.prototype.valuePresets = function () {
    var d = this.display, u = d.units ? " " + d.units : "", out = [];
    out.push({ name: "As imported (L " + round(d.rendition.center) + " / W " + round(d.rendition.width) + u + ")",
               center: d.rendition.center, width: d.rendition.width });
    (d.windows || []).forEach(function (w, i) {
      out.push({ name: "File: " + (w.name || "window " + (i + 1)) + " (L " + round(w.center) + " / W " + round(w.width) + ")",
                 center: w.center, width: w.width });
    });
    if (d.modality === "CT") {
      CT_PRESETS.forEach(function (p) { out.push({ name: p.name + " (L " + p.center + " / W " + p.width + ")", center: p.center, width: p.width }); });
    }
    out.push({ name: "Full range (" + round(d.min) + " … " + round(d.max) + u + ")",
               center: (d.min + d.max) / 2, width: Math.max(d.max - d.min, this.step() * 2) });
    return out;
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

  // The rendition now; the modality values (if any) right after, in the background.
  Viewer.prototype.load = function (src, valuesSrc, display) {
    var self = this;
    var img = new Image();
    this.pixels = null;
    this.values = null;
    this.kind = "grey";
    this.linkedWindow = null;
    this.display = display && display.rendition ? display : null;
    this.presets = GREY_PRESETS;
    this.fillPresets();
    this.loading = src;
    this.el.classList.add("loading");
    this.el.removeAttribute("data-values-loaded");
    this.el.setAttribute("data-units", "");
    img.onload = function () {
      if (self.loading !== src) { return; }
      var base = document.createElement("canvas");
      base.width = self.shown.width = img.naturalWidth;
      base.height = self.shown.height = img.naturalHeight;
      var ctx = base.getContext("2d", { willReadFrequently: true });
      ctx.drawImage(img, 0, 0);
      self.pixels = ctx.getImageData(0, 0, img.naturalWidth, img.naturalHeight);
      self.el.classList.remove("loading");
      self.el.setAttribute("data-loaded", "1");
      // A new image starts from the default view without telling linked viewers (they keep theirs);
      // onLoad listeners may then hand it the linked state.
      self.reset({ quiet: true });
      self.loadListeners.forEach(function (fn) { fn(self); });
      if (valuesSrc && self.display && window.FastPng) { self.loadValues(src, valuesSrc); }
    };
    img.onerror = function () { self.el.classList.add("failed"); };
    img.src = src;
  };

  Viewer.prototype.loadValues = function (src, valuesSrc) {
    var self = this;
    fetch(valuesSrc, { credentials: "same-origin" })
      .then(function (r) { if (!r.ok) { throw new Error("HTTP " + r.status); } return r.arrayBuffer(); })
      .then(function (buffer) {
        if (self.loading !== src) { return; }
        var png = window.FastPng.decode(new Uint8Array(buffer));
        if (png.channels !== 1 || png.depth !== 16) { throw new Error("not a 16-bit greyscale PNG"); }
        var grey = self.toGrey(self.state), keep = self.state;
        self.values = { raw: png.data, width: png.width, height: png.height };
        self.shown.width = png.width;
        self.shown.height = png.height;
        self.kind = "values";
        self.presets = self.valuePresets();
        self.fillPresets();
        // The same view in modality units: the rendition's own window when nobody changed it.
        // A window a linked viewer handed over in these same units is kept exactly.
        var untouched = keep.center === 128 && keep.width === 256, linked = self.linkedWindow;
        var w = linked && linked.units === (self.display.units || "") && linked.modality === self.display.modality
          ? { center: linked.center, width: linked.width }
          : untouched ? { center: self.display.rendition.center, width: self.display.rendition.width } : self.fromGrey(grey);
        self.state = { center: w.center, width: w.width, invert: keep.invert, zoom: keep.zoom, panX: keep.panX, panY: keep.panY };
        self.el.setAttribute("data-values-loaded", "1");
        self.el.setAttribute("data-units", self.display.units || "");
        self.quietly(function () { self.update(true); });
        self.loadListeners.forEach(function (fn) { fn(self); });  // linked viewers may now meet in units
      })
      .catch(function (err) {
        // The rendition stays: windowing then re-maps its 256 grey levels, as for any PNG or JPEG.
        self.el.setAttribute("data-values-loaded", "0");
        self.el.setAttribute("title", "Modality values unavailable (" + err.message + "): the display rendition is shown");
      });
  };

  // One step of the value scale (the finest window change that means something).
  Viewer.prototype.step = function () {
    return this.kind === "values" ? Math.max(this.display.scale || 1, 1e-6) : 1;
  };

  // A window in this viewer's units ⇄ a window on its rendition's stored grey levels (0–255).
  Viewer.prototype.toGrey = function (s) {
    if (this.kind !== "values") { return { center: s.center, width: s.width }; }
    var r = this.display.rendition, c = 255 * (s.center - r.center + r.width / 2) / r.width;
    return { center: this.display.monochrome1 ? 255 - c : c, width: 255 * s.width / r.width };
  };

  Viewer.prototype.fromGrey = function (g) {
    if (this.kind !== "values") { return { center: g.center, width: g.width }; }
    var r = this.display.rendition, c = this.display.monochrome1 ? 255 - g.center : g.center;
    return { center: r.center - r.width / 2 + c * r.width / 255, width: g.width * r.width / 255 };
  };

  // Grey-level mapping: a lookup table from centre/width (and invert) over the source's levels:
  // 256 rendition levels, or every 16-bit stored value (value = stored · scale + offset).
  Viewer.prototype.applyWindow = function () {
    var s = this.state, lo = s.center - s.width / 2, i, v, dst, n;
    if (this.kind === "values") {
      var d = this.display, raw = this.values.raw, lut = new Uint8ClampedArray(65536);
      var scale = d.scale || 1, offset = d.offset || 0, flip = !!d.monochrome1 !== !!s.invert;
      for (i = 0; i < 65536; i++) {
        v = ((i * scale + offset - lo) / s.width) * 255;
        lut[i] = flip ? 255 - v : v;
      }
      var outV = new ImageData(this.values.width, this.values.height);
      dst = outV.data;
      n = raw.length;
      for (i = 0; i < n; i++) {
        v = lut[raw[i]];
        dst[4 * i] = v; dst[4 * i + 1] = v; dst[4 * i + 2] = v; dst[4 * i + 3] = 255;
      }
      this.shown.getContext("2d").putImageData(outV, 0, 0);
      return;
    }
    if (!this.pixels) { return; }
    var lut8 = new Uint8ClampedArray(256);
    for (i = 0; i < 256; i++) {
      v = ((i - lo) / s.width) * 255;
      lut8[i] = s.invert ? 255 - v : v;
    }
    var src = this.pixels.data, out = new ImageData(this.pixels.width, this.pixels.height);
    dst = out.data;
    for (i = 0; i < src.length; i += 4) {
      dst[i] = lut8[src[i]]; dst[i + 1] = lut8[src[i + 1]]; dst[i + 2] = lut8[src[i + 2]]; dst[i + 3] = 255;
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
    var s = this.state, units = this.kind === "values" && this.display.units ? " " + this.display.units : "";
    if (windowChanged) { this.applyWindow(); }
    this.draw();
    var digits = this.kind === "values" && this.step() < 1 ? 1 : 0;
    this.readout.textContent = "W " + s.width.toFixed(digits) + " · L " + s.center.toFixed(digits) + units +
      (s.zoom !== 1 ? " · " + s.zoom.toFixed(1) + "×" : "") + (s.invert ? " · inv" : "");
    this.el.setAttribute("data-window", Math.round(s.center) + "/" + Math.round(s.width));
    this.el.setAttribute("data-zoom", s.zoom.toFixed(2));
    this.el.setAttribute("data-pan", Math.round(s.panX) + "," + Math.round(s.panY));
    this.el.setAttribute("data-inverted", s.invert ? "1" : "0");
    var match = this.presets.findIndex(function (p) { return Math.abs(p.center - s.center) < 1e-6 && Math.abs(p.width - s.width) < 1e-6; });
    this.presetSelect.value = match >= 0 ? String(match) : "";
    if (!this.silent) {
      var self = this;
      this.listeners.forEach(function (fn) { fn(self, !!windowChanged); });
    }
  };

  Viewer.prototype.onChange = function (fn) { this.listeners.push(fn); };
  // fn(viewer) after a new image is painted, and again once its modality values are in.
  Viewer.prototype.onLoad = function (fn) { this.loadListeners.push(fn); };

  // What a linked viewer needs: the window in this viewer's units and on its rendition's grey
  // levels, invert, and zoom/pan (pan as a fraction of the canvas).
  Viewer.prototype.relativeState = function () {
    var s = this.state, w = this.canvas.clientWidth || 1, h = this.canvas.clientHeight || 1;
    return {
      kind: this.kind, units: this.kind === "values" ? this.display.units || "" : "", modality: this.display ? this.display.modality : "",
      center: s.center, width: s.width, grey: this.toGrey(s), invert: s.invert,
      zoom: s.zoom, panX: s.panX / w, panY: s.panY / h,
    };
  };

  Viewer.prototype.setState = function (rel, parts) {
    var s = this.state, windowChanged = false;
    if (parts.window) {
      var w;
      this.linkedWindow = rel.kind === "values" ? { center: rel.center, width: rel.width, units: rel.units, modality: rel.modality } : null;
      if (this.kind === "values" && rel.kind === "values" && rel.units === this.display.units && rel.modality === this.display.modality) {
        w = { center: rel.center, width: rel.width };
      } else if (rel.grey) {
        w = this.fromGrey(rel.grey);
      } else {
        w = { center: rel.center, width: rel.width };
      }
      if (s.center !== w.center || s.width !== w.width || s.invert !== rel.invert) {
        s.center = w.center; s.width = w.width; s.invert = rel.invert;
        windowChanged = true;
      }
    }
    if (parts.zoom) {
      s.zoom = rel.zoom;
      s.panX = rel.panX * (this.canvas.clientWidth || 1);
      s.panY = rel.panY * (this.canvas.clientHeight || 1);
    }
    var self = this;
    this.quietly(function () { self.update(windowChanged); });
  };

  Viewer.prototype.setWindow = function (center, width) {
    this.linkedWindow = null;  // this viewer's own window from now on
    if (this.kind === "values") {
      var d = this.display, range = Math.max(d.max - d.min, this.step() * 2);
      this.state.center = Math.max(d.min - range, Math.min(d.max + range, center));
      this.state.width = Math.max(this.step(), Math.min(4 * range, width));
    } else {
      this.state.center = Math.max(-128, Math.min(384, center));
      this.state.width = Math.max(2, Math.min(512, width));
    }
    this.update(true);
  };

  // Pixels of mouse travel → window units: one grey level per pixel on a rendition; on values,
  // the rendition window's width spread over 256 pixels (so a drag feels the same).
  Viewer.prototype.unitsPerPixel = function () {
    return this.kind === "values" ? this.display.rendition.width / 256 : 1;
  };

  Viewer.prototype.preset = function (i) {
    var p = this.presets[i] || this.presets[0];
    this.setWindow(p.center, p.width);
  };

  Viewer.prototype.toggleInvert = function () {
    this.state.invert = !this.state.invert;
    this.update(true);
  };

  // {quiet: true}: without calling the change listeners (a new image, or a reset of every viewer at once).
  Viewer.prototype.reset = function (options) {
    var self = this;
    this.linkedWindow = null;
    this.state = this.defaultState();
    if (options && options.quiet) { this.quietly(function () { self.update(true); }); } else { this.update(true); }
  };

  Viewer.prototype.quietly = function (fn) {
    this.silent = true;
    try { fn(); } finally { this.silent = false; }
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
      drag = { pan: pan, x: e.clientX, y: e.clientY, s: Object.assign({}, self.state), k: self.unitsPerPixel() };
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
        self.setWindow(drag.s.center - dy * drag.k, drag.s.width + dx * drag.k);
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
