// Study wizard: shows the fields of the chosen builder and mode, the chosen dataset's runs,
// splits and label names, and a live one-line summary. Without JavaScript every field shows
// and the server still checks everything.
(function () {
  "use strict";

  var HELP = {
    stratified_random: "Papers 001/003: each query gets a random catalogue drawn from the pool, stratified by the class label (the query itself is never a candidate).",
    knn_farthest: "Paper 000: each query gets its k nearest and k farthest images under the model run, shuffled so that the position reveals nothing.",
    top_n: "Each query gets the N nearest images under the model run, shuffled.",
    pooled: "The top candidates of every chosen run, merged without duplicates: readers cannot tell which run proposed an image.",
    case_list: "Upload a CSV with the columns query and candidate (image ids or file names); an optional position column fixes the order."
  };

  function value(form, name) {
    var el = form.elements[name];
    return el ? el.value : "";
  }

  function toggleFields(form) {
    var builder = value(form, "builder");
    var mode = value(form, "mode");
    form.querySelectorAll("[data-builders]").forEach(function (el) {
      el.hidden = el.getAttribute("data-builders").split(" ").indexOf(builder) < 0;
    });
    form.querySelectorAll("[data-modes]").forEach(function (el) {
      el.hidden = el.getAttribute("data-modes").split(" ").indexOf(mode) < 0;
    });
    var help = document.getElementById("builder-help");
    if (help) { help.textContent = HELP[builder] || ""; }
  }

  function filterByDataset(form) {
    var dataset = value(form, "dataset");
    form.querySelectorAll("select[name=split] option, select[name=run] option").forEach(function (opt) {
      var owner = opt.getAttribute("data-dataset");
      var hide = owner !== null && owner !== dataset;
      opt.hidden = hide;
      opt.disabled = hide;
      if (hide && opt.selected) { opt.parentNode.value = ""; }
    });
    form.querySelectorAll("input[name=runs]").forEach(function (box) {
      var item = box.closest("li") || box.parentNode;
      var hide = box.getAttribute("data-dataset") !== dataset;
      item.hidden = hide;
      if (hide) { box.checked = false; }
    });
    var labels = JSON.parse(document.getElementById("labels-by-dataset").textContent || "{}")[dataset] || [];
    var list = document.getElementById("label-names");
    list.innerHTML = "";
    labels.forEach(function (name) {
      var opt = document.createElement("option");
      opt.value = name;
      list.appendChild(opt);
    });
  }

  function summarise(form) {
    var out = document.getElementById("live-summary");
    if (!out) { return; }
    var builder = value(form, "builder");
    var mode = value(form, "mode");
    var size = { stratified_random: value(form, "catalogue_size"), top_n: value(form, "catalogue_size"),
                 knn_farthest: String(2 * (parseInt(value(form, "nearest_k"), 10) || 0)) }[builder];
    var readers = Array.prototype.filter.call(form.querySelectorAll("input[name=readers]"), function (b) { return b.checked; })
      .map(function (b) { return b.parentNode.textContent.trim(); });
    var parts = [];
    if (builder !== "case_list") { parts.push((value(form, "n_queries") || "?") + " cases"); }
    if (size) { parts.push("catalogues of " + size); }
    if (mode === "choose_k") { parts.push("readers choose " + (value(form, "k") || "?")); }
    else if (mode === "rank_all") { parts.push("readers rank every candidate"); }
    else { parts.push("readers rate each candidate " + value(form, "rating_min") + "–" + value(form, "rating_max")); }
    parts.push(readers.length ? readers.length + " reader" + (readers.length > 1 ? "s" : "") + " (" + readers.join(", ") + ")" : "no reader yet");
    parts.push("seed " + value(form, "seed"));
    out.textContent = "Summary: " + parts.join(" · ") + ".";
  }

  document.addEventListener("DOMContentLoaded", function () {
    var form = document.getElementById("study-wizard");
    if (!form) { return; }
    ["query_label", "class_label"].forEach(function (name) {
      if (form.elements[name]) { form.elements[name].setAttribute("list", "label-names"); }
    });
    function refresh() { toggleFields(form); summarise(form); }
    form.elements.dataset.addEventListener("change", function () { filterByDataset(form); refresh(); });
    form.addEventListener("change", refresh);
    form.addEventListener("input", function () { summarise(form); });
    filterByDataset(form);
    refresh();
  });
})();
