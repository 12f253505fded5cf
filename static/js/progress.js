// Progress bars: polls a job's JSON (data-job-progress) and shows uploads (data-upload-progress).
(function () {
  "use strict";

  function render(el, job) {
    var bar = el.querySelector(".bar");
    var label = el.querySelector(".label");
    var percent = job.percent !== undefined ? job.percent : 0;
    bar.style.width = percent + "%";
    bar.className = "bar " + job.status;
    el.setAttribute("aria-valuenow", percent);
    label.textContent = job.status + " · " + (job.progress_done !== undefined ? job.progress_done : job.done) +
      "/" + (job.progress_total !== undefined ? job.progress_total : job.total) + " " + (job.progress_note || job.note || "");
  }

  // Polls back off from 1 s to 5 s while nothing changes (a long training epoch), and start again at
  // 1 s when the job moves. `poll=1` marks them for the server log (readerstudy/logfilters.py).
  var FIRST_MS = 1000, MAX_MS = 5000;

  function poll(el) {
    var url = el.getAttribute("data-job-progress");
    url += (url.indexOf("?") >= 0 ? "&" : "?") + "poll=1";
    var reload = el.getAttribute("data-reload-when-done") === "1";
    var delay = FIRST_MS, last = "";
    el.setAttribute("role", "progressbar");
    function tick() {
      fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); })
        .then(function (job) {
          render(el, job);
          var finished = ["succeeded", "failed", "cancelled"].indexOf(job.status) >= 0;
          // worker_lost (model runs): running without a heartbeat; the page offers Resume.
          if (finished || job.worker_lost) { if (reload) { window.location.reload(); } return; }
          var now = JSON.stringify([job.status, job.progress_done, job.done, job.progress_note, job.note]);
          delay = now === last ? Math.min(MAX_MS, delay * 1.5) : FIRST_MS;
          last = now;
          setTimeout(tick, delay);
        })
        .catch(function () { setTimeout(tick, MAX_MS); });
    }
    tick();
  }

  function uploadWithProgress(form) {
    form.addEventListener("submit", function (event) {
      if (!window.XMLHttpRequest || !window.FormData) { return; }
      event.preventDefault();
      var box = form.querySelector(".progress");
      var bar = box.querySelector(".bar");
      var label = box.querySelector(".label");
      box.hidden = false;
      form.querySelector("button").disabled = true;
      var xhr = new XMLHttpRequest();
      xhr.open("POST", form.action || window.location.href);
      xhr.upload.onprogress = function (e) {
        if (e.lengthComputable) {
          var p = Math.round(100 * e.loaded / e.total);
          bar.style.width = p + "%";
          label.textContent = "Uploading… " + p + "%";
        }
      };
      xhr.onload = function () {
        if (xhr.responseURL && xhr.responseURL !== window.location.href) { window.location.href = xhr.responseURL; return; }
        document.open(); document.write(xhr.responseText); document.close();
      };
      xhr.onerror = function () { label.textContent = "Upload failed: the connection was lost. Try again."; form.querySelector("button").disabled = false; };
      xhr.send(new FormData(form));
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-job-progress]").forEach(poll);
    document.querySelectorAll("form[data-upload-progress]").forEach(uploadWithProgress);
  });
})();
