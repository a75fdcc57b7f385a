// sagaflow console: live run pages. While a run has not ended, its page
// listens to the run's event stream and reloads the part that follows the
// run (at most every 200 ms); the stream's "end" closes it. When the run
// stops for an operator, the page reloads so its actions fit the state.
(function () {
  "use strict";
  function live() {
    var src = document.getElementById("live-source");
    if (!src || !window.EventSource || !window.htmx) return;
    var pending = null;
    function refresh() {
      if (pending) return;
      pending = setTimeout(function () {
        pending = null;
        htmx.ajax("GET", src.dataset.fragment, { target: "#run-live", swap: "outerHTML" });
      }, 200);
    }
    document.body.addEventListener("htmx:afterSwap", function () {
      var run = document.getElementById("run-live");
      var now = run && run.dataset.state;
      if (now !== src.dataset.state && (now === "FAILED" || now === "COMPENSATION_FAILED")) {
        window.location.reload();
      }
    });
    var es = new EventSource(src.dataset.events);
    es.addEventListener("change", refresh);
    es.addEventListener("end", function () { es.close(); refresh(); });
    es.addEventListener("failed", function () { es.close(); });
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", live);
  } else {
    live();
  }
})();
