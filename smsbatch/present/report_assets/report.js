// The report's charts: reads the JSON in #report-data (written by smsbatch/present/report.py)
// and draws each <figure class="chart" data-chart-expected="1"> with uPlot.
//
// After drawing, the page says what it drew, in the DOM, where a headless
// browser's --dump-dom (and the tests) can read it:
//   <figure data-drawn="1">   the chart's canvas has a size and ink inside its plot area
//   <figure data-points="N" data-y-ticks="[...]" data-outlined="[labels]">  points drawn per series,
//         the left axis's ticks, and the series drawn with a line (the tests read these)
//   <body data-charts-expected="N" data-charts-drawn="M" data-chart-errors="[...]"
//         data-remote-requests="[urls]" data-report-done="1">
//   <html data-errors="[...]">  (set by the error catcher at the top of the page, if anything went wrong)
(function () {
  "use strict";

  var data = JSON.parse(document.getElementById("report-data").textContent);
  var HEIGHT = 230;
  var PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22",
                 "#393b79", "#ad494a", "#637939", "#7b4173", "#3182bd", "#e6550d", "#31a354", "#756bb1"];
  var OTHERS_COLOUR = "#7f7f7f";
  var FAIL_COLOUR = "#d62728";
  var plots = [];  // [{plot, box}]
  var chartErrors = [];
  var syncingScale = false;
  // Counts (attempts, messages, replications) are whole: ticks at whole numbers only.
  var COUNT_STEPS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000, 1e5, 2e5, 5e5,
                     1e6, 2e6, 5e6, 1e7, 2e7, 5e7, 1e8, 2e8, 5e8, 1e9, 2e9, 5e9];
  var WHOLE_STEPS = COUNT_STEPS;
  function noLine() { return null; }  // dots only

  function colour(index) {
    var label = data.groups[index] || "";
    return label.indexOf("others (") === 0 && index === data.groups.length - 1 ? OTHERS_COLOUR
      : PALETTE[index % PALETTE.length];
  }

  function fade(hex, alpha) {
    var n = parseInt(hex.slice(1), 16);
    return "rgba(" + (n >> 16) + "," + ((n >> 8) & 255) + "," + (n & 255) + "," + alpha + ")";
  }

  // ---- number formats (the hover legend and the axes) ----

  function seconds(v) {
    if (v == null) return "--";
    if (v < 1) return v.toFixed(3) + " s";
    if (v < 10) return v.toFixed(2) + " s";
    return v.toLocaleString("en-US", {maximumFractionDigits: 1}) + " s";
  }

  function number(v, digits) {
    return v == null ? "--" : v.toLocaleString("en-US", {maximumFractionDigits: digits});
  }

  function percent(v) {
    return v == null ? "--" : v.toFixed(v >= 99 && v < 100 ? 2 : 1) + "%";
  }

  function axisSeconds(u, splits) {
    return splits.map(function (v) { return v == null ? "" : number(v, 3) + " s"; });
  }

  // ---- building blocks ----

  function boxOf(name) {
    return document.querySelector('figure[data-chart="' + name + '"][data-chart-expected="1"] .plot');
  }

  function widthOf(box) {
    return Math.max(320, Math.floor(box.getBoundingClientRect().width));
  }

  // Ink inside the plot area (not the axes): a chart whose series are all
  // empty draws axes only and does not count as drawn.
  function hasInk(u) {
    var canvas = u.ctx.canvas;
    if (!canvas.width || !canvas.height) return false;
    var b = u.bbox;
    if (b.width < 1 || b.height < 1) return false;
    var pixels = u.ctx.getImageData(b.left, b.top, b.width, b.height).data;
    var inked = 0;
    for (var i = 3; i < pixels.length; i += 4) {
      if (pixels[i] > 128 && ++inked >= 20) return true;
    }
    return false;
  }

  // Checked until the first draw with ink, not on every redraw (zooming): a
  // canvas read back often wants another mode, and Chromium says so in the console.
  function markDrawn(u) {
    var figure = u.root.closest("figure");
    if (!figure || figure.getAttribute("data-drawn") === "1") return;
    figure.setAttribute("data-drawn", hasInk(u) ? "1" : "0");
  }

  // Until the cursor is on the chart, the legend shows each series' last value
  // (uPlot's own legend says "--" there, which reads as "no data").
  function lastValueLegends(options) {
    options.series.forEach(function (series, s) {
      var own = series.value;
      series.value = function (u, v, si, i) {
        if (i == null) {
          var values = u.data[s] || [];
          for (i = values.length - 1; i >= 0 && values[i] == null; i--);
          if (i < 0) return own ? own(u, null, si, null) : "--";
          v = values[i];
        }
        return own ? own(u, v, si, i) : number(v, 3);
      };
    });
  }

  function describe(u) {
    var figure = u.root.closest("figure");
    if (!figure) return;
    figure.setAttribute("data-points", String(u.data[0].length));
    figure.setAttribute("data-y-ticks", JSON.stringify(u.axes[1] && u.axes[1]._splits || []));
    figure.setAttribute("data-outlined", JSON.stringify(u.series.slice(1).filter(function (s) {
      return s.width > 0 && s.paths !== noLine;
    }).map(function (s) { return s.label; })));
  }

  function mount(name, options, columns) {
    var box = boxOf(name);
    if (!box) return;
    options.width = widthOf(box);
    options.height = options.height || HEIGHT;
    options.hooks = options.hooks || {};
    lastValueLegends(options);
    // Ink is looked for before any annotation is drawn (the deadline's labels
    // would be ink on an empty chart): only series count.
    options.hooks.draw = [markDrawn, describe].concat(options.hooks.draw || []);
    try {
      plots.push({plot: new uPlot(options, columns, box), box: box});
    } catch (error) {
      chartErrors.push(name + ": " + error.message);
      window.recordReportError("chart " + name + ": " + error.message);
    }
  }

  // Zooming one chart over simulated time zooms the others to the same span.
  function followZoom(u, key) {
    if (key !== "x" || syncingScale) return;
    syncingScale = true;
    plots.forEach(function (p) {
      if (p.plot !== u && p.plot.timeChart) p.plot.setScale("x", {min: u.scales.x.min, max: u.scales.x.max});
    });
    syncingScale = false;
  }

  function timeOptions(yLabel) {
    return {
      scales: {x: {time: false}},
      axes: [
        {label: "simulated time", values: axisSeconds},
        {label: yLabel, size: 70}
      ],
      cursor: {sync: {key: "simulated-time"}, drag: {x: true, y: false}},
      hooks: {setScale: [followZoom], init: [function (u) { u.timeChart = true; }], drawClear: [drawOutages]},
      series: [{label: "time", value: function (u, v) { return seconds(v); }}]
    };
  }

  // Per-bin counts divided by the bin's width: rates per simulated second.
  function perSecond(t, counts) {
    return counts.map(function (c, i) {
      var width = t[i] - (i === 0 ? 0 : t[i - 1]);
      return c == null || width <= 0 ? null : c / width;
    });
  }

  // Stacked series: the plotted values are running sums; the legend shows each
  // series' own value, kept aside in `own`. Layers are filled, not outlined:
  // the top layer's line would be the total's outline in one small sender's colour.
  function stacked(options, columns, layers, firstIndex) {
    var running = null;
    var own = [];
    layers.forEach(function (layer, k) {
      own.push(layer.values);
      running = layer.values.map(function (v, i) { return (running ? running[i] || 0 : 0) + (v || 0); });
      var seriesIndex = firstIndex + k;
      columns.push(running);
      options.series.push({
        label: layer.label, stroke: layer.colour, fill: fade(layer.colour, 0.55), width: 0,
        scale: layer.scale || "y",  // uPlot copies an undefined key over its default
        paths: uPlot.paths.stepped({align: 1}),
        value: function (u, v, s, i) { return i == null ? "--" : number(own[k][i], layer.digits == null ? 1 : layer.digits); }
      });
      if (k > 0) options.bands = (options.bands || []).concat([{series: [seriesIndex, seriesIndex - 1]}]);
    });
  }

  // ---- the charts ----

  function reachChart(tl) {
    var t = [0].concat(tl.t_s);
    var share = function (column) {
      return [0].concat(column.map(function (v) { return v == null ? null : 100 * v / data.messages; }));
    };
    var options = timeOptions("% of messages");
    options.scales.y = {range: [0, 100]};
    options.series.push({label: "sent", stroke: "#1f77b4", width: 2, fill: fade("#1f77b4", 0.1),
                         value: function (u, v) { return percent(v); }});
    var columns = [t, share(tl.sent)];
    if (data.receipts_modelled && tl.delivered) {
      options.series.push({label: "delivered", stroke: "#2ca02c", width: 2, value: function (u, v) { return percent(v); }});
      columns.push(share(tl.delivered));
    }
    if (tl.failed) {
      options.series.push({label: "failed", stroke: FAIL_COLOUR, width: 2, value: function (u, v) { return percent(v); }});
      columns.push(share(tl.failed));
    }
    options.hooks.draw = [drawDeadline, drawReachMarks];
    mount("reach", options, columns);
  }

  function dashed(ctx, colour, draw) {
    ctx.save();
    ctx.strokeStyle = colour;
    ctx.lineWidth = 1.5 * devicePixelRatio;
    ctx.setLineDash([6 * devicePixelRatio, 4 * devicePixelRatio]);
    ctx.beginPath();
    draw();
    ctx.stroke();
    ctx.restore();
  }

  var LABEL_FONT = function () { return (12 * devicePixelRatio) + "px system-ui, sans-serif"; };

  function textWidth(ctx, text) {
    ctx.save();
    ctx.font = LABEL_FONT();
    var width = ctx.measureText(text).width;
    ctx.restore();
    return width;
  }

  // Text on a pale box, so the curve and the dashed lines never run through it.
  function label(ctx, text, x, y, align) {
    var px = devicePixelRatio, width = textWidth(ctx, text);
    var left = align === "right" ? x - width : x;
    ctx.save();
    ctx.fillStyle = "rgba(255,255,255,0.85)";
    ctx.fillRect(left - 3 * px, y - 12 * px, width + 6 * px, 16 * px);
    ctx.font = LABEL_FONT();
    ctx.textAlign = align || "left";
    ctx.fillStyle = "#222";
    ctx.fillText(text, x, y);
    ctx.restore();
  }

  function drawDeadline(u) {
    var b = u.bbox, ctx = u.ctx, px = devicePixelRatio;
    if (data.deadline_share != null) {
      var y = u.valToPos(100 * data.deadline_share, "y", true);
      dashed(ctx, "#555", function () { ctx.moveTo(b.left, y); ctx.lineTo(b.left + b.width, y); });
      label(ctx, "target " + percent(100 * data.deadline_share), b.left + 4 * px, y - 4 * px);
    }
    if (data.deadline_s == null) return;
    // Deadline labels go at the bottom: by the deadline the curve is high, so
    // the bottom is clear of it and of the reach marks.
    var bottom = b.top + b.height - 6 * px;
    if (data.deadline_s <= u.scales.x.max) {
      var x = u.valToPos(data.deadline_s, "x", true);
      dashed(ctx, FAIL_COLOUR, function () { ctx.moveTo(x, b.top); ctx.lineTo(x, b.top + b.height); });
      label(ctx, "deadline " + seconds(data.deadline_s), x - 4 * px, bottom - 10 * px, "right");
    } else {
      label(ctx, "deadline " + seconds(data.deadline_s) + ", later than this chart \u2192",
            b.left + b.width - 4 * px, bottom - 10 * px, "right");
    }
  }

  // Outages shaded on every time chart, behind the series, each labelled once at its top.
  function drawOutages(u) {
    var b = u.bbox, ctx = u.ctx, px = devicePixelRatio;
    (data.outages || []).forEach(function (outage, i) {
      var x0 = Math.max(b.left, u.valToPos(outage.start, "x", true));
      var x1 = Math.min(b.left + b.width, u.valToPos(outage.end, "x", true));
      if (!(x1 > x0)) return;
      ctx.save();
      ctx.fillStyle = "rgba(214, 39, 40, 0.10)";
      ctx.fillRect(x0, b.top, x1 - x0, b.height);
      ctx.restore();
      label(ctx, outage.label, x0 + 3 * px, b.top + (12 + 14 * (i % 3)) * px, "left");
    });
  }

  function drawReachMarks(u) {
    var ctx = u.ctx, px = devicePixelRatio;
    ["50", "90", "99"].forEach(function (mark) {
      var at = data.reach_s[mark];
      if (at == null || at < u.scales.x.min || at > u.scales.x.max) return;
      var x = u.valToPos(at, "x", true), y = u.valToPos(Number(mark), "y", true);
      ctx.save();
      ctx.fillStyle = "#1f77b4";
      ctx.strokeStyle = "#fff";
      ctx.lineWidth = 2 * px;
      ctx.beginPath();
      ctx.arc(x, y, 5 * px, 0, 2 * Math.PI);
      ctx.fill();
      ctx.stroke();
      ctx.restore();
      // Below the point, under the curve (which rises to the right); to its
      // left where the right edge would cut the text off.
      var text = mark + "% at " + seconds(at);
      var right = x + 9 * px + textWidth(ctx, text) < u.bbox.left + u.bbox.width;
      label(ctx, text, right ? x + 9 * px : x - 9 * px, y + 14 * px, right ? "left" : "right");
    });
  }

  function attemptsChart(tl) {
    var rate = tl.rate || tl;  // bins merged for the eye (report.py's RATE_POINTS)
    var options = timeOptions("attempts / s");
    var columns = [rate.t_s];
    var layers = [];
    rate.attempts.forEach(function (counts, g) {
      if (counts) layers.push({label: data.groups[g], colour: colour(g), values: perSecond(rate.t_s, counts)});
    });
    stacked(options, columns, layers, 1);
    if (rate.failed_attempts) {
      options.series.push({label: "failed attempts", stroke: FAIL_COLOUR, width: 1.5,
                           paths: uPlot.paths.stepped({align: 1}), value: function (u, v) { return number(v, 1); }});
      columns.push(perSecond(rate.t_s, rate.failed_attempts));
    }
    if (rate.throttled) {
      options.series.push({label: "throttled", stroke: "#ff7f0e", width: 1.5, dash: [6, 3],
                           paths: uPlot.paths.stepped({align: 1}), value: function (u, v) { return number(v, 1); }});
      columns.push(perSecond(rate.t_s, rate.throttled));
    }
    if (columns.length > 1) mount("attempts", options, columns);
  }

  function sendTimeChart(tl) {
    var options = timeOptions("send time");
    options.axes[1].values = axisSeconds;
    var columns = [tl.t_s];
    // p99 first and faint, p50 last and bold: the spiky p99 drawn over them hid p50 and p95.
    [["p99_s", "p99", fade(FAIL_COLOUR, 0.55), 1], ["p95_s", "p95", "#ff7f0e", 1.5],
     ["p50_s", "p50", "#2ca02c", 2]].forEach(function (s) {
      if (!tl[s[0]]) return;
      options.series.push({label: s[1], stroke: s[2], width: s[3], value: function (u, v) { return seconds(v); }});
      columns.push(tl[s[0]]);
    });
    if (columns.length > 1) mount("send-time", options, columns);
  }

  function backlogChart(tl) {
    var options = timeOptions("messages waiting");
    options.axes[1].incrs = COUNT_STEPS;
    options.scales.inflight = {auto: true};
    options.axes.push({scale: "inflight", side: 1, label: "in flight", size: 60, grid: {show: false},
                       incrs: COUNT_STEPS});
    var columns = [tl.t_s];
    var layers = [];
    tl.in_flight.forEach(function (values, g) {
      if (values) layers.push({label: data.groups[g] + " in flight", colour: colour(g), values: values, scale: "inflight",
                               digits: 0});
    });
    stacked(options, columns, layers, 1);
    if (tl.backlog) {
      options.series.push({label: "backlog", stroke: "#222", width: 2.5, value: function (u, v) { return number(v, 0); }});
      columns.push(tl.backlog);
    }
    if (columns.length > 1) mount("backlog", options, columns);
  }

  function histogramChart(bars, g) {
    if (!bars) return;
    var c = colour(g);
    mount("histogram-" + g, {
      height: 200,
      legend: {show: true},
      scales: {x: {time: false, range: [0, bars.x[bars.x.length - 1] + bars.width / 2]}, y: {range: function (u, min, max) { return [0, Math.max(1, max * 1.05)]; }}},
      axes: [{label: "send time (bars " + seconds(bars.width) + " wide)", values: axisSeconds}, {label: "attempts", size: 60, incrs: COUNT_STEPS}],
      cursor: {drag: {x: true, y: false}},
      series: [
        {label: "send time", value: function (u, v) { return v == null ? "--" : seconds(v - bars.width / 2) + " to " + seconds(v + bars.width / 2); }},
        {label: "attempts", stroke: c, fill: fade(c, 0.8), width: 1,
         paths: uPlot.paths.bars({size: [0.92, Infinity], align: 0}), points: {show: false},
         value: function (u, v) { return number(v, 1); }}
      ]
    }, [bars.x, bars.y]);
  }


  function replicationsChart(reps) {
    var options = {
      scales: {x: {time: false}},
      axes: [{label: "replication", incrs: WHOLE_STEPS}, {label: "simulated seconds", values: axisSeconds, size: 70}],
      series: [{label: "replication"}],
      cursor: {drag: {x: true, y: false}}
    };
    var columns = [reps.n];
    [["sim_elapsed_s", "elapsed", "#222"], ["reach_s.50", "50% sent", "#2ca02c"],
     ["reach_s.90", "90% sent", "#1f77b4"], ["reach_s.99", "99% sent", "#9467bd"],
     ["reach_s.100", "100% sent", "#ff7f0e"]].forEach(function (k) {
      options.series.push(dots(k[1], k[2], "y", seconds));
      columns.push(reps[k[0]]);
    });
    mount("replications", options, columns);
    if (reps.within_deadline) deadlineSpreadChart(reps);
  }

  function deadlineSpreadChart(reps) {
    var shares = reps.within_deadline.map(function (v) { return v == null ? null : 100 * v; });
    var options = {
      height: 180,
      scales: {x: {time: false}, y: {range: function (u, min, max) { return [Math.min(min, targetPercent()) - 2, 100]; }}},
      axes: [{label: "replication", incrs: WHOLE_STEPS}, {label: "% within deadline", size: 70}],
      series: [{label: "replication"}, dots("within deadline", "#1f77b4", "y", percent)],
      cursor: {drag: {x: true, y: false}},
      hooks: {draw: [drawTarget]}
    };
    mount("replications-deadline", options, [reps.n, shares]);
  }

  function targetPercent() {
    return data.deadline_share == null ? 100 : 100 * data.deadline_share;
  }

  function drawTarget(u) {
    if (data.deadline_share == null) return;
    var b = u.bbox, ctx = u.ctx, y = u.valToPos(targetPercent(), "y", true);
    dashed(ctx, FAIL_COLOUR, function () { ctx.moveTo(b.left, y); ctx.lineTo(b.left + b.width, y); });
  }  // no label: it would hide dots, and the caption says what the line is

  function dots(name, stroke, scale, format) {
    return {label: name, stroke: stroke, scale: scale, paths: noLine,
            points: {show: true, space: 0, size: 7, fill: stroke},
            value: function (u, v) { return format(v); }};
  }

  // ---- drawing, then saying what was drawn ----

  function drawAll() {
    var tl = data.timeline;
    if (tl && tl.t_s) {
      if (tl.sent) reachChart(tl);
      attemptsChart(tl);
      sendTimeChart(tl);
      backlogChart(tl);
    }
    data.histograms.forEach(histogramChart);
    if (data.replications) replicationsChart(data.replications);
  }

  function report() {
    var expected = document.querySelectorAll('figure[data-chart-expected="1"]');
    var drawn = 0;
    expected.forEach(function (figure) {
      if (figure.getAttribute("data-drawn") === "1") drawn++;
      else chartErrors.push(figure.getAttribute("data-chart") + ": nothing drawn");
    });
    document.body.setAttribute("data-charts-expected", String(expected.length));
    document.body.setAttribute("data-charts-drawn", String(drawn));
    document.body.setAttribute("data-chart-errors", JSON.stringify(chartErrors));
    document.body.setAttribute("data-remote-requests", JSON.stringify(remoteRequests()));
    document.body.setAttribute("data-report-done", "1");
  }

  // Whatever the page fetched that is not inside it: should be nothing at all.
  function remoteRequests() {
    return performance.getEntriesByType("resource").map(function (entry) { return entry.name; })
      .filter(function (url) { return !/^(data|blob|file):/.test(url); });
  }

  function resizeAll(width) {
    plots.forEach(function (p) { p.plot.setSize({width: width || widthOf(p.box), height: p.plot.height}); });
  }

  try {
    drawAll();
  } catch (error) {
    chartErrors.push("drawing: " + error.message);
    window.recordReportError("drawing: " + error.message);
  }
  setTimeout(report, 0);  // uPlot draws in a microtask after each constructor

  var resizing = null;
  window.addEventListener("resize", function () {
    clearTimeout(resizing);
    resizing = setTimeout(function () { resizeAll(); }, 100);
  });
  // Paper is narrower than most screens: draw to the printed column's width.
  window.addEventListener("beforeprint", function () { resizeAll(660); });
  window.addEventListener("afterprint", function () { resizeAll(); });
})();
