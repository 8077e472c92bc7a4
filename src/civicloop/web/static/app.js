/* civicloop web: small behaviours the pages share (no inline scripts, so a strict CSP can be added). */
(function () {
  "use strict";

  // Ctrl+Enter (or Cmd+Enter) submits the form the focus is in, when the form asks for it.
  document.addEventListener("keydown", function (event) {
    if (event.key !== "Enter" || !(event.ctrlKey || event.metaKey)) return;
    var form = event.target && event.target.closest && event.target.closest("form[data-ctrl-enter]");
    if (form) {
      event.preventDefault();
      if (form.requestSubmit) form.requestSubmit(); else form.submit();
    }
  });

  // "Back" links go back in history when there is somewhere to go.
  document.addEventListener("click", function (event) {
    var link = event.target.closest && event.target.closest("[data-back]");
    if (link && window.history.length > 1) {
      event.preventDefault();
      window.history.back();
    }
  });

  // Forms that need a confirmation (data-confirm="question").
  document.addEventListener("submit", function (event) {
    var question = event.target.getAttribute && event.target.getAttribute("data-confirm");
    if (question && !window.confirm(question)) event.preventDefault();
  });

  function readJson(id) {
    var node = document.getElementById(id);
    return node ? JSON.parse(node.textContent) : null;
  }

  // Charts: <div data-chart="id-of-json"> whose JSON is an ECharts option.
  function drawCharts(root) {
    if (typeof echarts === "undefined") return;
    (root || document).querySelectorAll("[data-chart]").forEach(function (el) {
      if (el.getAttribute("data-drawn")) return;
      var option = readJson(el.getAttribute("data-chart"));
      if (!option) return;
      var map = el.getAttribute("data-geojson");
      if (map) echarts.registerMap(el.getAttribute("data-map-name") || "grids", readJson(map));
      var chart = echarts.init(el, null, { renderer: "svg" });
      chart.setOption(option);
      el.setAttribute("data-drawn", "1");
      window.addEventListener("resize", function () { chart.resize(); });
    });
  }

  document.addEventListener("DOMContentLoaded", function () { drawCharts(document); });
  document.addEventListener("htmx:afterSwap", function (event) { drawCharts(event.target); });
})();
