// The console's few behaviours: charts from data-figure, confirmations, refreshing panels.
(function () {
  function drawCharts() {
    if (!window.Plotly) return;
    document.querySelectorAll("[data-figure]").forEach(function (el) {
      try {
        var fig = JSON.parse(el.getAttribute("data-figure"));
        window.Plotly.newPlot(el, fig.data, fig.layout, { displaylogo: false, responsive: true });
      } catch (e) { el.textContent = "chart unavailable: " + e; }
    });
  }
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var question = form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) event.preventDefault();
  });
  function refresh() {
    document.querySelectorAll("[data-refresh]").forEach(function (el) {
      var url = el.getAttribute("data-refresh");
      fetch(url, { credentials: "same-origin" }).then(function (r) { return r.ok ? r.text() : null; })
        .then(function (html) { if (html !== null) { el.innerHTML = html; el.dispatchEvent(new Event("refreshed")); } });
    });
  }
  window.addEventListener("load", function () {
    drawCharts();
    var period = document.body.getAttribute("data-refresh-ms");
    if (document.querySelector("[data-refresh]")) setInterval(refresh, Number(period) || 2000);
  });
})();
