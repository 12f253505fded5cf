// The reader's case page: choose k / rank all / rate, per-image questions, flag, keyboard,
// autosaved drafts, idempotent submission, active-time heartbeats, saliency overlays.
//
// The page's JSON (#case-data) is the same blinded payload the reading API serves: candidates
// are named by opaque per-reader keys. Every change is autosaved as a draft (debounced); a
// reload restores it exactly. Submission carries a random client token, so a retried request
// after a lost response never stores a second answer.
(function () {
  "use strict";

  var root = document.getElementById("reader");
  if (!root) { return; }
  var data = JSON.parse(document.getElementById("case-data").textContent);
  var mode = root.getAttribute("data-mode");
  var k = Number(root.getAttribute("data-k") || 0);
  var ratingMin = Number(root.getAttribute("data-rating-min"));
  var ratingMax = Number(root.getAttribute("data-rating-max"));
  var canSubmit = root.getAttribute("data-can-submit") === "1";
  var untouchedPolicy = root.getAttribute("data-untouched") || "allow";  // rank all: allow / warn / refuse
  var untouchedWarned = false;
  var csrf = root.getAttribute("data-csrf");
  var urls = {
    draft: root.getAttribute("data-api-draft"), answer: root.getAttribute("data-api-answer"),
    heartbeat: root.getAttribute("data-api-heartbeat"), flag: root.getAttribute("data-api-flag"),
    flagClear: root.getAttribute("data-api-flag-clear"),
  };
  var grid = document.getElementById("grid");
  var tiles = Array.prototype.slice.call(grid.querySelectorAll(".tile"));
  var byKey = {}, byPosition = {};
  tiles.forEach(function (t) { byKey[t.getAttribute("data-key")] = t; byPosition[t.getAttribute("data-position")] = t; });
  var submitBtn = document.getElementById("submit-btn");
  var counter = document.getElementById("counter");
  var saveStatus = document.getElementById("save-status");
  var messageEl = document.getElementById("message");
  var helpEl = document.getElementById("help");
  var enlargedEl = document.getElementById("enlarged");
  var questionSets = Array.prototype.slice.call(root.querySelectorAll("fieldset.question"));
  var token = randomToken();
  var focused = tiles[0];

  // --- state ----------------------------------------------------------------------------------
  var state = { selected: [], ranking: tiles.map(keyOf), ratings: {}, answers: {} };

  function keyOf(tile) { return tile.getAttribute("data-key"); }
  function isEmpty(sel) {
    return !sel || (!(sel.selected || []).length && !(sel.ranking || []).length &&
      !Object.keys(sel.ratings || {}).length && !(sel.image_answers || []).length);
  }

  function restore(sel, force) {
    if (!sel || (isEmpty(sel) && !force)) { return; }
    state = { selected: [], ranking: tiles.map(keyOf), ratings: {}, answers: {} };
    state.selected = (sel.selected || []).filter(function (key) { return byKey[key]; });
    if ((sel.ranking || []).length) {
      var ranked = sel.ranking.filter(function (key) { return byKey[key]; });
      state.ranking = ranked.concat(tiles.map(keyOf).filter(function (key) { return ranked.indexOf(key) < 0; }));
    }
    Object.keys(sel.ratings || {}).forEach(function (key) { if (byKey[key]) { state.ratings[key] = sel.ratings[key]; } });
    (sel.image_answers || []).forEach(function (a) { state.answers[a.question + "|" + a.image] = a.value; });
  }
  restore(isEmpty(data.draft) ? data.answer : data.draft);

  // A local copy of changes the server has not confirmed yet (a reload right after a click).
  var localKey = "cbir-draft:" + root.getAttribute("data-user") + ":" + urls.draft;
  var local = readLocal();
  if (local && canSubmit) { restore(local, true); } else { dropLocal(); }
  function readLocal() {
    try { return JSON.parse(window.localStorage.getItem(localKey) || "null"); } catch (e) { return null; }
  }
  function keepLocal() {
    try { window.localStorage.setItem(localKey, JSON.stringify(body())); } catch (e) { /* storage full or off */ }
  }
  function dropLocal() {
    try { window.localStorage.removeItem(localKey); } catch (e) { /* storage off */ }
  }

  function body() {
    var out = { image_answers: [] };
    if (mode === "choose_k") { out.selected = state.selected.slice(); }
    if (mode === "rank_all") { out.ranking = state.ranking.slice(); }
    if (mode === "rate") { out.ratings = Object.assign({}, state.ratings); }
    Object.keys(state.answers).forEach(function (id) {
      var cut = id.indexOf("|");
      out.image_answers.push({ question: id.slice(0, cut), image: id.slice(cut + 1), value: state.answers[id] });
    });
    return out;
  }

  function missing() {
    var reasons = [];
    if (mode === "choose_k" && state.selected.length !== k) {
      reasons.push("choose exactly " + k + " (" + state.selected.length + " chosen)");
    }
    if (mode === "rate") {
      var unrated = tiles.filter(function (t) { return state.ratings[keyOf(t)] === undefined; }).length;
      if (unrated) { reasons.push("rate every candidate (" + unrated + " left)"); }
    }
    var open = questionSets.filter(function (f) { return state.answers[qid(f)] === undefined; }).length;
    if (open) { reasons.push("answer every image question (" + open + " left)"); }
    return reasons;
  }
  function qid(fieldset) { return fieldset.getAttribute("data-question") + "|" + fieldset.getAttribute("data-image"); }

  // --- per-image questions by keyboard ---------------------------------------------------------
  // Each choice gets a letter (its first letter not taken by a shortcut or an earlier choice of the
  // same question), shown beside it. A letter answers the focused image's question that has it (the
  // first unanswered one when several do); Q moves the keyboard to the query's questions and back.
  var RESERVED = "eilqrsz";
  var queryQuestions = root.querySelector(".questions[data-image='query']"), onQuery = false;
  questionSets.forEach(function (f) {
    var used = RESERVED;
    Array.prototype.forEach.call(f.querySelectorAll("input"), function (input) {
      var letters = input.value.toLowerCase().replace(/[^a-z]/g, "") + "abcdfghjkmnoptuvwxy", letter = "";
      for (var i = 0; i < letters.length && !letter; i++) { if (used.indexOf(letters[i]) < 0) { letter = letters[i]; } }
      if (!letter) { return; }
      used += letter;
      input.setAttribute("data-letter", letter);
      var kbd = document.createElement("kbd");
      kbd.className = "choice-key";
      kbd.textContent = letter.toUpperCase();
      input.parentNode.appendChild(kbd);
      input.parentNode.title = "Press " + letter.toUpperCase();
    });
  });

  function answerByLetter(letter) {
    if (!canSubmit) { return false; }
    var scope = onQuery ? queryQuestions : focused && focused.querySelector(".questions");
    if (!scope) { return false; }
    var inputs = Array.prototype.slice.call(scope.querySelectorAll("input[data-letter='" + letter + "']"));
    if (!inputs.length) { return false; }
    var open = inputs.filter(function (i) { return state.answers[qid(i.closest("fieldset"))] === undefined; });
    var input = (open.length ? open : inputs)[0];
    state.answers[qid(input.closest("fieldset"))] = input.value;
    changed();
    return true;
  }

  function setOnQuery(on) {
    onQuery = !!on && !!queryQuestions;
    root.classList.toggle("answering-query", onQuery);
    if (queryQuestions) { queryQuestions.classList.toggle("active", onQuery); }
    if (onQuery) { queryQuestions.focus(); } else if (focused) { focused.focus(); }
  }

  // --- rendering ------------------------------------------------------------------------------
  function render() {
    if (mode === "choose_k") {
      tiles.forEach(function (t) {
        var on = state.selected.indexOf(keyOf(t)) >= 0;
        t.classList.toggle("selected", on);
        t.setAttribute("aria-label", "Candidate " + t.getAttribute("data-position") + (on ? ", chosen" : ""));
      });
      counter.textContent = state.selected.length + "/" + k;
      counter.classList.toggle("complete", state.selected.length === k);
    }
    if (mode === "rank_all") {
      state.ranking.forEach(function (key, i) {
        var t = byKey[key];
        grid.appendChild(t);
        t.querySelector(".badge").textContent = String(i + 1);
        t.setAttribute("aria-label", "Rank " + (i + 1));
      });
    }
    if (mode === "rate") {
      tiles.forEach(function (t) {
        var r = state.ratings[keyOf(t)];
        t.classList.toggle("rated", r !== undefined);
        Array.prototype.forEach.call(t.querySelectorAll("button.rate"), function (b) {
          var on = Number(b.getAttribute("data-rating")) === r;
          b.classList.toggle("on", on);
          b.setAttribute("aria-pressed", on ? "true" : "false");
        });
      });
    }
    questionSets.forEach(function (f) {
      var value = state.answers[qid(f)];
      Array.prototype.forEach.call(f.querySelectorAll("input"), function (input) {
        input.checked = input.value === value;
        input.disabled = !canSubmit;
      });
    });
    if (submitBtn) {
      var reasons = missing();
      submitBtn.disabled = reasons.length > 0 || submitting;
      submitBtn.title = reasons.length ? "To submit: " + reasons.join("; ") : "Submit (Enter)";
    }
    updateEnlargedTitle();
  }

  function changed() {
    untouchedWarned = false;
    render();
    hideMessage();
    keepLocal();
    scheduleSave();
  }

  // --- interactions ---------------------------------------------------------------------------
  function toggle(tile) {
    if (!canSubmit || mode !== "choose_k" || !tile) { return; }
    var key = keyOf(tile), i = state.selected.indexOf(key);
    if (i >= 0) {
      state.selected.splice(i, 1);
    } else if (state.selected.length >= k) {
      showMessage("You have already chosen " + k + ". Un-choose one first.");
      return;
    } else {
      state.selected.push(key);
    }
    changed();
  }

  function rate(tile, value) {
    if (!canSubmit || mode !== "rate" || !tile || value < ratingMin || value > ratingMax) { return; }
    state.ratings[keyOf(tile)] = value;
    changed();
  }

  function move(tile, delta) {
    if (!canSubmit || mode !== "rank_all" || !tile) { return; }
    var key = keyOf(tile), from = state.ranking.indexOf(key), to = from + delta;
    if (to < 0 || to >= state.ranking.length) { return; }
    moveTo(key, to);
    focus(tile);
  }

  function moveTo(key, to) {
    var from = state.ranking.indexOf(key);
    if (from < 0 || from === to) { return; }
    state.ranking.splice(from, 1);
    state.ranking.splice(to, 0, key);
    changed();
  }

  function moveToRank(tile, rank) {
    if (!canSubmit || mode !== "rank_all" || !tile || rank > state.ranking.length) { return; }
    moveTo(keyOf(tile), rank - 1);
    focus(tile);
  }

  function focus(tile) {
    if (!tile) { return; }
    if (onQuery) {  // back from the query's questions to the candidates
      onQuery = false;
      root.classList.remove("answering-query");
      queryQuestions.classList.remove("active");
    }
    tiles.forEach(function (t) { t.tabIndex = t === tile ? 0 : -1; });
    focused = tile;
    tile.focus({ preventScroll: false });
  }

  function ordered() { return Array.prototype.slice.call(grid.querySelectorAll(".tile")); }

  function columns() {
    var list = ordered(), top = list[0].offsetTop, n = 0;
    while (n < list.length && list[n].offsetTop === top) { n++; }
    return Math.max(1, n);
  }

  function neighbour(tile, delta) {
    var list = ordered(), i = list.indexOf(tile) + delta;
    return list[Math.max(0, Math.min(list.length - 1, i))];
  }

  grid.addEventListener("click", function (e) {
    var tile = e.target.closest(".tile");
    if (!tile) { return; }
    if (e.target.closest("button.enlarge")) { openEnlarged(tile); return; }
    if (e.target.closest("button.move")) {
      move(tile, Number(e.target.closest("button.move").getAttribute("data-move")));
      return;
    }
    if (e.target.closest("button.rate")) {
      rate(tile, Number(e.target.closest("button.rate").getAttribute("data-rating")));
      focus(tile);
      return;
    }
    if (e.target.closest("fieldset.question")) { return; }
    focus(tile);
    toggle(tile);
  });
  grid.addEventListener("dblclick", function (e) {
    var tile = e.target.closest(".tile");
    if (tile && mode !== "choose_k" && !e.target.closest("button, fieldset")) { openEnlarged(tile); }
  });
  grid.addEventListener("focusin", function (e) {
    var tile = e.target.closest(".tile");
    if (tile) { focused = tile; tiles.forEach(function (t) { t.tabIndex = t === tile ? 0 : -1; }); }
  });
  root.addEventListener("change", function (e) {
    var f = e.target.closest("fieldset.question");
    if (!f || !canSubmit) { return; }
    state.answers[qid(f)] = e.target.value;
    changed();
  });

  // Drag to rank (HTML5 drag and drop).
  if (mode === "rank_all" && canSubmit) {
    var dragKey = null;
    grid.addEventListener("dragstart", function (e) {
      var tile = e.target.closest(".tile");
      if (!tile) { return; }
      dragKey = keyOf(tile);
      tile.classList.add("dragging");
      e.dataTransfer.effectAllowed = "move";
      e.dataTransfer.setData("text/plain", dragKey);
    });
    grid.addEventListener("dragover", function (e) {
      if (dragKey && e.target.closest(".tile")) { e.preventDefault(); e.dataTransfer.dropEffect = "move"; }
    });
    grid.addEventListener("drop", function (e) {
      var target = e.target.closest(".tile");
      if (!dragKey || !target) { return; }
      e.preventDefault();
      moveTo(dragKey, state.ranking.indexOf(keyOf(target)));
      focus(byKey[dragKey]);
    });
    grid.addEventListener("dragend", function () {
      tiles.forEach(function (t) { t.classList.remove("dragging"); });
      dragKey = null;
    });
  } else if (mode === "rank_all") {
    tiles.forEach(function (t) { t.removeAttribute("draggable"); });
  }

  // --- keyboard -------------------------------------------------------------------------------
  document.addEventListener("keydown", function (e) {
    var t = e.target, flagDialog = document.getElementById("flag-dialog");
    if (flagDialog.open || e.ctrlKey || e.metaKey || e.altKey) { return; }
    if (t.tagName === "TEXTAREA" || (t.tagName === "INPUT" && t.type !== "radio") || t.tagName === "SELECT") { return; }
    if (e.key === "?") { e.preventDefault(); toggleHelp(); return; }
    if (e.key === "Escape") {
      if (!helpEl.hidden) { toggleHelp(false); } else if (!enlargedEl.hidden) { closeEnlarged(); }
      return;
    }
    if (!helpEl.hidden) { return; }
    if (e.key === "Enter") {
      if (t.tagName === "BUTTON" || t.tagName === "A") { return; }
      e.preventDefault();
      onEnter();
      return;
    }
    if (mode === "rank_all" && e.shiftKey && /^(Digit|Numpad)[0-9]$/.test(e.code)) {
      e.preventDefault();
      var d = Number(e.code.slice(-1));
      moveToRank(focused, d === 0 ? 10 : d);
      return;
    }
    if (/^[0-9]$/.test(e.key)) { e.preventDefault(); onDigit(Number(e.key)); return; }
    if (e.key.indexOf("Arrow") === 0) {
      if (t.tagName === "INPUT") { return; }  // arrows move within a radio group
      e.preventDefault();
      onArrow(e.key, e.shiftKey);
      return;
    }
    if (e.key === " " && t.closest && t.closest(".tile") && !t.closest("fieldset")) {
      e.preventDefault();
      toggle(focused);
      return;
    }
    var lower = e.key.toLowerCase();
    if (lower === "e") { openEnlarged(enlargedTile || focused); }
    else if (lower === "i") { (enlargedEl.hidden ? queryViewer : enlargedCandidate).toggleInvert(); }
    else if (lower === "r") { resetAll(); }
    else if (lower === "q") { setOnQuery(!onQuery); }
    else if (lower.length === 1 && /[a-z]/.test(lower) && !e.shiftKey && answerByLetter(lower)) { e.preventDefault(); }
    else if (lower === "l") { setLinked(!linked); }
    else if (lower === "z") { setZoomLinked(!zoomLinked); }
    else if (lower === "s" && saliencyBtn) { setSaliency(!saliencyOn); }
  });

  function onEnter() {
    if (!canSubmit) {
      var next = document.getElementById("next-case");
      if (next) { window.location.assign(next.href); }
      return;
    }
    var reasons = missing();
    if (reasons.length) { showMessage("Not yet: " + reasons.join("; ") + "."); return; }
    if (untouched() && untouchedPolicy === "refuse") {
      showMessage("The ranking is still in the order the candidates were shown: order them before submitting.");
      return;
    }
    if (untouched() && untouchedPolicy === "warn" && !untouchedWarned) {
      untouchedWarned = true;
      showMessage("You have not changed the order the candidates were shown in. Press Enter (or Submit) again " +
                  "to submit this ranking as it is, or order the candidates first.", "info");
      return;
    }
    submit();
  }

  // A rank-all answer still in the shown order (tiles is the order the server rendered).
  function untouched() {
    return mode === "rank_all" && state.ranking.join(",") === tiles.map(keyOf).join(",");
  }

  function onDigit(d) {
    var position = d === 0 ? 10 : d;
    if (mode === "rate") { rate(focused, d); if (canSubmit && d >= ratingMin && d <= ratingMax) { focus(neighbour(focused, 1)); } return; }
    // Rank all: the number on a tile is its rank, and a digit means that rank.
    var tile = mode === "rank_all" ? byKey[state.ranking[position - 1]] : byPosition[String(position)];
    if (!tile) { return; }
    if (!enlargedEl.hidden && mode !== "choose_k") { showEnlarged(tile); return; }
    if (mode === "choose_k") { toggle(tile); if (enlargedEl.hidden) { focus(tile); } } else { focus(tile); }
  }

  function onArrow(key, shift) {
    var back = key === "ArrowLeft" || key === "ArrowUp";
    if (!enlargedEl.hidden) {
      if (key === "ArrowLeft" || key === "ArrowRight") { showEnlarged(neighbour(enlargedTile, back ? -1 : 1)); }
      return;
    }
    if (mode === "rank_all" && shift) { move(focused, back ? -1 : 1); return; }
    var step = key === "ArrowUp" || key === "ArrowDown" ? columns() : 1;
    focus(neighbour(focused, back ? -step : step));
  }

  if (submitBtn) { submitBtn.addEventListener("click", onEnter); }

  // --- overlays -------------------------------------------------------------------------------
  var queryViewer = null, enlargedQuery = null, enlargedCandidate = null, enlargedTile = null;

  function openEnlarged(tile) {
    if (!tile) { return; }
    enlargedEl.hidden = false;
    if (!enlargedQuery) {
      enlargedQuery = watch(new window.CbirViewer(document.getElementById("enlarged-query")));
      enlargedCandidate = watch(new window.CbirViewer(document.getElementById("enlarged-candidate")));
      if (saliencyBtn) { withOverlay(enlargedQuery, queryOverlay, "Saliency overlay of the query"); }
    }
    showEnlarged(tile);
    document.getElementById("enlarged-close").focus();
  }

  function showEnlarged(tile) {
    enlargedTile = tile;
    focused = tile;
    enlargedCandidate.load(tile.querySelector("img").getAttribute("src"), candidateValues[keyOf(tile)], candidateDisplay[keyOf(tile)]);
    if (saliencyBtn) {
      var overlay = tile.querySelector("img.saliency-overlay");
      withOverlay(enlargedCandidate, overlay && overlay.getAttribute("data-src"),
                  "Saliency overlay of candidate " + tile.getAttribute("data-position"));
    }
    updateEnlargedTitle();
  }

  function updateEnlargedTitle() {
    if (!enlargedTile || enlargedEl.hidden) { return; }
    var key = keyOf(enlargedTile), text = "Candidate " + enlargedTile.getAttribute("data-position");
    if (mode === "rank_all") { text = "Rank " + (state.ranking.indexOf(key) + 1); }
    if (mode === "rate" && state.ratings[key] !== undefined) { text += " · rated " + state.ratings[key]; }
    var chosen = state.selected.indexOf(key) >= 0;
    if (mode === "choose_k") { text += chosen ? " · chosen" : ""; }
    document.getElementById("enlarged-title").textContent = text;
    var btn = document.getElementById("enlarged-toggle");
    if (btn) { btn.textContent = chosen ? "Un-choose" : "Choose"; btn.disabled = !canSubmit; }
  }

  function closeEnlarged() {
    enlargedEl.hidden = true;
    if (enlargedTile) { focus(enlargedTile); }
    enlargedTile = null;
  }

  document.getElementById("enlarged-close").addEventListener("click", closeEnlarged);
  document.getElementById("enlarged-prev").addEventListener("click", function () { showEnlarged(neighbour(enlargedTile, -1)); });
  document.getElementById("enlarged-next").addEventListener("click", function () { showEnlarged(neighbour(enlargedTile, 1)); });
  var enlargedToggle = document.getElementById("enlarged-toggle");
  if (enlargedToggle) { enlargedToggle.addEventListener("click", function () { toggle(enlargedTile); }); }

  // --- saliency overlays ----------------------------------------------------------------------
  // Only when the study shows saliency and this case has overlays (then the button exists). Every
  // overlay comes from the study's one saliency run; showing them changes nothing of the answer or
  // the layout (they lie over the images). On/off is remembered per reader and study.
  var saliencyBtn = document.getElementById("saliency-btn"), saliencyOn = false;
  var queryOverlay = document.getElementById("query-viewer").getAttribute("data-saliency");
  var tileOverlays = Array.prototype.slice.call(grid.querySelectorAll("img.saliency-overlay"));
  var saliencyKey = "cbir-saliency:" + root.getAttribute("data-user") + ":" + data.study.id;

  function withOverlay(viewer, src, label) {
    viewer.setOverlay(src, label);
    viewer.showOverlay(saliencyOn);
  }

  function setSaliency(on) {
    saliencyOn = !!on;
    saliencyBtn.setAttribute("aria-pressed", saliencyOn ? "true" : "false");
    saliencyBtn.classList.toggle("on", saliencyOn);
    tileOverlays.forEach(function (img) {
      if (saliencyOn && !img.getAttribute("src")) { img.src = img.getAttribute("data-src"); }
      img.hidden = !saliencyOn;
    });
    [queryViewer, enlargedQuery, enlargedCandidate].forEach(function (v) { if (v) { v.showOverlay(saliencyOn); } });
    root.setAttribute("data-saliency", saliencyOn ? "1" : "0");
    try { window.localStorage.setItem(saliencyKey, saliencyOn ? "1" : "0"); } catch (e) { /* storage off */ }
  }

  if (saliencyBtn) { saliencyBtn.addEventListener("click", function () { setSaliency(!saliencyOn); }); }

  function toggleHelp(show) {
    helpEl.hidden = show === undefined ? !helpEl.hidden : !show;
    if (!helpEl.hidden) { document.getElementById("help-close").focus(); } else if (focused) { focused.focus(); }
  }
  document.getElementById("help-btn").addEventListener("click", function () { toggleHelp(true); });
  document.getElementById("help-close").addEventListener("click", function () { toggleHelp(false); });

  // --- flag -----------------------------------------------------------------------------------
  var flagDialog = document.getElementById("flag-dialog"), flagBtn = document.getElementById("flag-btn");
  flagBtn.addEventListener("click", function () { flagDialog.showModal(); });
  flagDialog.addEventListener("close", function () {
    var action = flagDialog.returnValue;
    if (action === "save") {
      api("POST", urls.flag, { comment: document.getElementById("flag-comment").value })
        .then(function () { setFlagged(true); showMessage("Case flagged for the coordinator.", "info"); })
        .catch(function (err) { showMessage("The flag was not saved: " + err.message); });
    } else if (action === "clear") {
      api("POST", urls.flagClear, null)
        .then(function () { setFlagged(false); document.getElementById("flag-comment").value = ""; })
        .catch(function (err) { showMessage("The flag was not removed: " + err.message); });
    }
    flagDialog.returnValue = "";
  });
  function setFlagged(on) {
    flagBtn.classList.toggle("flagged", on);
    flagBtn.textContent = on ? "Flagged" : "Flag case";
    document.getElementById("flag-clear").hidden = !on;
  }

  // --- server calls ---------------------------------------------------------------------------
  function api(method, url, payload, keepalive) {
    return fetch(url, {
      method: method, credentials: "same-origin", keepalive: !!keepalive,
      headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRFToken": csrf },
      body: payload === null || payload === undefined ? undefined : JSON.stringify(payload),
    }).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (d) {
        if (!r.ok) {
          var err = new Error(errorText(d, r.status));
          err.status = r.status;
          throw err;
        }
        return d;
      });
    });
  }

  function errorText(d, status) {
    if (status === 401 || status === 403) { return "your session has ended: log in again in another tab, then retry"; }
    if (d && d.detail) { return d.detail; }
    if (d && typeof d === "object") {
      return Object.keys(d).map(function (f) { return f + ": " + [].concat(d[f]).join(" "); }).join("; ") || "error " + status;
    }
    return "error " + status;
  }

  var saveTimer = null, dirty = false, saveChain = Promise.resolve();
  function scheduleSave() {
    if (!canSubmit) { return; }
    dirty = true;
    setStatus("Unsaved changes…", "pending");
    clearTimeout(saveTimer);
    saveTimer = setTimeout(saveDraft, 500);
  }

  function saveDraft(keepalive) {
    clearTimeout(saveTimer);
    if (!dirty) { return saveChain; }
    dirty = false;
    var snapshot = body();
    saveChain = saveChain.then(function () {
      setStatus("Saving…", "pending");
      return api("PUT", urls.draft, snapshot, keepalive).then(function () {
        if (!dirty) { setStatus("Draft saved", "saved"); dropLocal(); }
      }, function (err) {
        dirty = true;
        setStatus("Not saved (" + err.message + "), retrying…", "failed");
        if (!err.status || err.status >= 500) { saveTimer = setTimeout(saveDraft, 3000); }
      });
    });
    return saveChain;
  }

  var submitting = false;
  var submittedAt = 0;
  function submit() {
    if (submitting || !canSubmit) { return; }
    submittedAt = Date.now();
    submitting = true;
    clearTimeout(saveTimer);
    dirty = false;
    render();
    setStatus("Submitting…", "pending");
    var payload = body();
    payload.client_token = token;
    payload.active_ms_delta = takeActive();
    send(payload, 0);
  }

  function send(payload, attempt) {
    api("POST", urls.answer, payload).then(function (result) {
      setStatus("Submitted", "saved");
      dropLocal();
      try { window.sessionStorage.setItem(TURNAROUND_KEY, String(submittedAt)); } catch (e) { /* storage off */ }
      window.location.assign(result.next_url);
    }, function (err) {
      if ((!err.status || err.status >= 500) && attempt < 3) {
        setTimeout(function () { send(payload, attempt + 1); }, 1000 * (attempt + 1));  // same token: no duplicate
        return;
      }
      submitting = false;
      activeMs += payload.active_ms_delta;
      render();
      setStatus("", "");
      showMessage("Not submitted: " + err.message);
    });
  }

  // --- active time ----------------------------------------------------------------------------
  var BEAT_MS = 15000, IDLE_MS = 5 * 60 * 1000;
  var activeMs = 0, lastTick = performance.now(), lastInput = Date.now(), lastBeat = Date.now();
  function isActive() {
    return document.visibilityState === "visible" && document.hasFocus() && Date.now() - lastInput < IDLE_MS;
  }
  function tick() {
    var now = performance.now();
    if (isActive()) { activeMs += now - lastTick; }
    lastTick = now;
  }
  function takeActive() {
    tick();
    var ms = Math.floor(activeMs);
    activeMs -= ms;
    return ms;
  }
  function beat(keepalive) {
    var ms = takeActive();
    lastBeat = Date.now();
    if (ms < 1) { return; }
    api("POST", urls.heartbeat, { active_ms_delta: ms }, keepalive).catch(function () { activeMs += ms; });
  }
  ["pointerdown", "keydown", "wheel", "pointermove"].forEach(function (type) {
    document.addEventListener(type, function () { lastInput = Date.now(); }, { passive: true, capture: true });
  });
  window.addEventListener("focus", tick);
  window.addEventListener("blur", tick);
  document.addEventListener("visibilitychange", function () {
    tick();
    if (document.visibilityState === "hidden" && !submitting) { saveDraft(true); beat(true); }
  });
  window.addEventListener("pagehide", function () {
    if (!submitting) { saveDraft(true); beat(true); }
  });
  setInterval(function () {
    tick();
    if (canSubmit && !submitting && Date.now() - lastBeat >= BEAT_MS) { beat(false); }
  }, 1000);

  // --- messages -------------------------------------------------------------------------------
  function showMessage(text, kind) {
    messageEl.textContent = text;
    messageEl.className = "reader-message " + (kind || "error");
    messageEl.hidden = false;
  }
  function hideMessage() { messageEl.hidden = true; }
  function setStatus(text, kind) {
    saveStatus.textContent = text;
    saveStatus.className = "save-status " + (kind || "");
  }

  function randomToken() {
    var bytes = new Uint8Array(16);
    window.crypto.getRandomValues(bytes);
    return Array.prototype.map.call(bytes, function (b) { return ("0" + b.toString(16)).slice(-2); }).join("");
  }

  // --- linked viewers -------------------------------------------------------------------------
  // Linked (L, default on): the window/level and invert of the query apply to every candidate and to
  // the compare view; zoom linked (Z, default off) does the same for zoom and pan. The candidates
  // are plain images: one SVG colour-transfer filter (the same linear map as the viewer's lookup
  // table) and a CSS transform give them the linked window and zoom. The two viewers of the compare
  // view always share their window and zoom.
  var linkBtn = document.getElementById("link-btn"), zoomLinkBtn = document.getElementById("link-zoom-btn");
  var linked = true, zoomLinked = false, linkedState = null, linkedSource = null;
  var tileImages = tiles.map(function (t) { return t.querySelector("img.tile-img"); });
  var candidateDisplay = {};  // key → the rendition's window etc. (DICOM candidates), from the payload
  var candidateValues = {};   // key → address of the candidate's modality values (16-bit PNG), if any
  (data.candidates || []).forEach(function (c) {
    if (c.display) { candidateDisplay[c.key] = c.display; }
    if (c.values) { candidateValues[c.key] = c.values; }
  });
  var tileFilters = makeTileFilters();

  // One SVG colour-transfer filter per candidate: each DICOM rendition was made with its own window,
  // so the same window in HU is a different window on each rendition's grey levels.
  function makeTileFilters() {
    var ns = "http://www.w3.org/2000/svg", svg = document.createElementNS(ns, "svg");
    svg.setAttribute("width", "0");
    svg.setAttribute("height", "0");
    svg.setAttribute("aria-hidden", "true");
    svg.style.position = "absolute";
    var out = tiles.map(function (t, i) {
      var filter = document.createElementNS(ns, "filter"), transfer = document.createElementNS(ns, "feComponentTransfer");
      filter.setAttribute("id", "tile-window-" + i);
      filter.setAttribute("color-interpolation-filters", "sRGB");
      var funcs = ["feFuncR", "feFuncG", "feFuncB"].map(function (name) {
        var f = document.createElementNS(ns, name);
        f.setAttribute("type", "linear");
        transfer.appendChild(f);
        return f;
      });
      filter.appendChild(transfer);
      svg.appendChild(filter);
      return funcs;
    });
    document.body.appendChild(svg);
    return out;
  }

  // The linked window on this candidate's rendition grey levels: from the sender's modality units
  // when the candidate's rendition window is known in the same units, else the sender's grey window.
  function tileGreyWindow(tile, rel) {
    var d = candidateDisplay[keyOf(tile)];
    if (rel.kind === "values" && d && d.rendition && d.units === rel.units && d.modality === rel.modality) {
      var r = d.rendition, c = 255 * (rel.center - r.center + r.width / 2) / r.width;
      return { center: d.monochrome1 ? 255 - c : c, width: 255 * rel.width / r.width };
    }
    return rel.grey || { center: rel.center, width: rel.width };
  }

  function applyToTiles(rel, parts) {
    if (parts.window) {
      tiles.forEach(function (t, i) {
        // Grey level g (0–1) → (255·g − low) / width, as the viewer's table; inverted: 1 − that.
        var g = tileGreyWindow(t, rel), low = g.center - g.width / 2, slope = 255 / g.width, intercept = -low / g.width;
        if (rel.invert) { slope = -slope; intercept = 1 - intercept; }
        tileFilters[i].forEach(function (f) { f.setAttribute("slope", String(slope)); f.setAttribute("intercept", String(intercept)); });
        var plain = Math.abs(g.center - 128) < 1e-6 && Math.abs(g.width - 256) < 1e-6 && !rel.invert;
        tileImages[i].style.filter = plain ? "" : "url(#tile-window-" + i + ")";
      });
      var shown = rel.grey || rel;
      root.setAttribute("data-tiles-window", Math.round(shown.center) + "/" + Math.round(shown.width) + (rel.invert ? "/inv" : ""));
    }
    if (parts.zoom) {
      tileImages.forEach(function (img) {
        var plain = rel.zoom === 1 && !rel.panX && !rel.panY;
        img.style.transform = plain ? "" : "translate(" + rel.panX * img.clientWidth + "px, " + rel.panY * img.clientHeight +
          "px) scale(" + rel.zoom + ")";
      });
      root.setAttribute("data-tiles-zoom", rel.zoom.toFixed(2));
    }
  }

  function allViewers() { return [queryViewer, enlargedQuery, enlargedCandidate].filter(Boolean); }
  function comparePair(v) { return v === enlargedQuery ? enlargedCandidate : v === enlargedCandidate ? enlargedQuery : null; }

  function onViewerChange(source) {
    var rel = source.relativeState(), parts = { window: linked, zoom: zoomLinked }, pair = comparePair(source);
    if (pair) { pair.setState(rel, { window: true, zoom: true }); }
    if (!parts.window && !parts.zoom) { return; }
    linkedState = rel;
    linkedSource = source;
    allViewers().forEach(function (v) { if (v !== source && v !== pair) { v.setState(rel, parts); } });
    applyToTiles(rel, parts);
  }

  function onViewerLoad(v) {
    var pair = comparePair(v);
    if (pair && pair.pixels) { v.setState(pair.relativeState(), { window: true, zoom: true }); return; }
    if (linkedState && v !== linkedSource && (linked || zoomLinked)) { v.setState(linkedState, { window: linked, zoom: zoomLinked }); }
  }

  function watch(v) { v.onChange(onViewerChange); v.onLoad(onViewerLoad); return v; }

  function setLinked(on) {
    linked = !!on;
    linkBtn.setAttribute("aria-pressed", linked ? "true" : "false");
    root.setAttribute("data-linked", linked ? "1" : "0");
    if (linked && queryViewer) { onViewerChange(queryViewer); }
  }

  function setZoomLinked(on) {
    zoomLinked = !!on;
    zoomLinkBtn.setAttribute("aria-pressed", zoomLinked ? "true" : "false");
    root.setAttribute("data-zoom-linked", zoomLinked ? "1" : "0");
    if (zoomLinked && queryViewer) { onViewerChange(queryViewer); }
  }

  function resetAll() {
    allViewers().forEach(function (v) { v.reset({ quiet: true }); });
    linkedState = null;
    var plain = { kind: "grey", center: 128, width: 256, grey: { center: 128, width: 256 }, invert: false, zoom: 1, panX: 0, panY: 0 };
    applyToTiles(plain, { window: true, zoom: true });
  }

  linkBtn.addEventListener("click", function () { setLinked(!linked); linkBtn.blur(); });
  zoomLinkBtn.addEventListener("click", function () { setZoomLinked(!zoomLinked); zoomLinkBtn.blur(); });

  // --- layout: the whole catalogue in the window, as large as it fits ------------------------
  // The number of columns that gives the largest square image with every candidate visible
  // without scrolling (below the reader bar), leaving the query pane at least MIN_QUERY_PX or
  // 22 % of the width. The tile's chrome (border, padding, rating buttons, questions, labels) is
  // measured, not assumed. Too small a fit (a long catalogue on a small screen) keeps the CSS grid.
  var MIN_QUERY_PX = 300, MIN_TILE_PX = 140;
  var layout = root.querySelector(".reading-layout");
  function fitGrid() {
    grid.style.gridTemplateColumns = "";
    layout.style.gridTemplateColumns = "";
    root.style.removeProperty("--reading-height");
    if (window.matchMedia("(max-width: 900px)").matches) { return; }
    var gap = parseFloat(window.getComputedStyle(grid).columnGap) || 0;
    var layoutGap = parseFloat(window.getComputedStyle(layout).columnGap) || 0;
    var chromeX = 0, chromeY = 0;
    tiles.forEach(function (t) {
      var img = t.querySelector("img");
      chromeX = Math.max(chromeX, t.offsetWidth - img.offsetWidth);
      chromeY = Math.max(chromeY, t.offsetHeight - img.offsetHeight);
    });
    var width = layout.clientWidth, top = grid.getBoundingClientRect().top + window.scrollY;
    var height = window.innerHeight - top - 8;
    var minQuery = Math.max(MIN_QUERY_PX, 0.22 * width);
    var room = width - layoutGap - minQuery, n = tiles.length, best = { size: 0, cols: 1 };
    for (var cols = 1; cols <= n; cols++) {
      var rows = Math.ceil(n / cols);
      var size = Math.floor(Math.min((room - (cols - 1) * gap) / cols - chromeX, (height - (rows - 1) * gap) / rows - chromeY));
      if (size > best.size) { best = { size: size, cols: cols }; }
    }
    if (best.size < MIN_TILE_PX) { return; }
    grid.style.gridTemplateColumns = "repeat(" + best.cols + ", " + (best.size + chromeX) + "px)";
    layout.style.gridTemplateColumns = "minmax(" + Math.floor(minQuery) + "px, 1fr) auto";
    root.style.setProperty("--reading-height", Math.floor(height) + "px");
    root.setAttribute("data-tile-px", String(best.size));
  }
  var fitTimer = null;
  window.addEventListener("resize", function () { clearTimeout(fitTimer); fitTimer = setTimeout(fitGrid, 60); });

  // --- the case usable, then the next case's images --------------------------------------------
  // Usable = the query and every candidate painted. Only then are the next case's images fetched
  // (into the browser's cache: their addresses are immutable), so they never queue before this
  // case's own. The time from the previous case's submit key to this moment is kept on the page
  // (data-turnaround-ms) for the reading benchmark.
  var TURNAROUND_KEY = "cbir-submitted-at";
  function whenUsable(done) {
    var pending = tileImages.filter(function (img) { return !img.complete; }).length + (queryViewer.pixels ? 0 : 1);
    if (!pending) { done(); return; }
    function one() { pending -= 1; if (pending === 0) { done(); } }
    tileImages.forEach(function (img) {
      if (!img.complete) { img.addEventListener("load", one, { once: true }); img.addEventListener("error", one, { once: true }); }
    });
    if (!queryViewer.pixels) { queryViewer.onLoad(function () { if (pending > 0) { one(); } }); }
  }
  function afterUsable() {
    root.setAttribute("data-usable", "1");
    var at = null;
    try { at = window.sessionStorage.getItem(TURNAROUND_KEY); window.sessionStorage.removeItem(TURNAROUND_KEY); } catch (e) { /* off */ }
    if (at) { root.setAttribute("data-turnaround-ms", String(Date.now() - Number(at))); }
    prefetchUrls.forEach(function (url) {
      var link = document.createElement("link");
      link.rel = "prefetch";
      link.as = "image";
      link.href = url;
      document.head.appendChild(link);
    });
  }
  var prefetchUrls = JSON.parse(document.getElementById("prefetch-data").textContent || "[]");

  // --- start ----------------------------------------------------------------------------------
  if (!canSubmit) {
    root.classList.add("read-only");
    tiles.forEach(function (t) { t.removeAttribute("draggable"); });
  }
  queryViewer = watch(new window.CbirViewer(document.getElementById("query-viewer")));
  setLinked(true);
  setZoomLinked(false);
  if (saliencyBtn) {
    withOverlay(queryViewer, queryOverlay, "Saliency overlay of the query");
    var stored = null;
    try { stored = window.localStorage.getItem(saliencyKey); } catch (e) { /* storage off */ }
    setSaliency(stored === "1");
  }
  render();
  fitGrid();
  if (local && canSubmit) { scheduleSave(); }
  focus(mode === "rank_all" ? byKey[state.ranking[0]] : tiles[0]);
  root.setAttribute("data-ready", "1");
  whenUsable(afterUsable);
})();
