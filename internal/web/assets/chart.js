// Patient charts: one uPlot chart per vital, loaded from the server's
// downsampled series (min, mean, max per bucket) and, on the 1 h view,
// extended live with readings from the page's event stream.
(function () {
  "use strict";
  var charts = {};

  // The time axis always spans the chosen window ending now, however few
  // points there are.
  function window_(span) {
    return function () { var now = Date.now() / 1000; return [now - span, now]; };
  }

  function build(fig, patient, range, span) {
    var code = fig.getAttribute("data-code");
    var unit = fig.getAttribute("data-unit") || "";
    var box = fig.querySelector(".plot");
    fetch("/patients/" + encodeURIComponent(patient) + "/series?code=" + encodeURIComponent(code) + "&range=" + encodeURIComponent(range),
      { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.json(); })
      .then(function (s) {
        var width = Math.max(280, box.clientWidth || 320);
        var opts = {
          width: width, height: 180,
          series: [{}, { label: "min", stroke: "#9aa5b5" }, { label: "mean " + unit, stroke: "#0b5cad", width: 2 }, { label: "max", stroke: "#9aa5b5" }],
          scales: { x: { time: true, range: window_(span) } },
          axes: [{}, { size: 50 }],
          legend: { show: true }
        };
        var data = [s.t, s.min, s.mean, s.max];
        charts[code] = { plot: new uPlot(opts, data, box), data: data, live: range === "1h" };
      })
      .catch(function () { box.textContent = "Chart unavailable."; });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var root = document.querySelector(".patient[data-patient]");
    if (!root || typeof uPlot === "undefined") return;
    var patient = root.getAttribute("data-patient"), range = root.getAttribute("data-range");
    var span = Number(root.getAttribute("data-span")) || 3600;
    root.querySelectorAll(".chart[data-code]").forEach(function (fig) { build(fig, patient, range, span); });
  });

  document.addEventListener("tend:source", function (e) {
    e.detail.addEventListener("reading", function (m) {
      var p;
      try { p = JSON.parse(m.data); } catch (err) { return; }
      var c = charts[p.code];
      if (!c || !c.live) return;
      var d = c.data, last = d[0].length ? d[0][d[0].length - 1] : -Infinity;
      if (p.t <= last) return;
      d[0].push(p.t); d[1].push(p.v); d[2].push(p.v); d[3].push(p.v);
      var cutoff = p.t - 3600;
      while (d[0].length && d[0][0] < cutoff) { d.forEach(function (col) { col.shift(); }); }
      c.plot.setData(d);
    });
  });
})();
