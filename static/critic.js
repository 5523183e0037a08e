// Critic page: a click (or Enter) on a point of the PR curve previews that threshold.
(function () {
  "use strict";
  function pick(target) {
    const point = target.closest ? target.closest("[data-threshold]") : null;
    if (!point || !point.closest("svg.pr-plot")) return false;
    const form = document.querySelector("#threshold-preview form");
    if (!form) return false;
    form.querySelector("select[name=rule]").value = "score";
    form.querySelector("input[name=value]").value = Number(point.dataset.threshold).toFixed(4);
    if (form.requestSubmit) form.requestSubmit(); else form.submit();
    document.getElementById("threshold-preview").scrollIntoView({ behavior: "smooth", block: "nearest" });
    return true;
  }
  document.addEventListener("click", function (event) {
    if (pick(event.target)) event.preventDefault();
  });
  document.addEventListener("keydown", function (event) {
    if ((event.key === "Enter" || event.key === " ") && pick(event.target)) event.preventDefault();
  });
})();
