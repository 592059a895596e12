// hongbao charts, drawn with uPlot by the live dashboard (dashboard.js) and
// by the report `hongbao plot` writes. The charts are defined once, in
// internal/monitor/charts.go: the dashboard gets them from api/charts, the
// report has them inline. No external resources.
"use strict";

const chartPalette = ["#c0392b", "#2980b9", "#27ae60", "#8e44ad", "#d35400", "#16a085", "#7f8c8d", "#2c3e50",
  "#f1c40f", "#e84393", "#000000", "#785028"];
const phaseFill = { ramp: "rgb(255,235,180)", load: "rgb(210,240,210)", drain: "rgb(220,225,245)" };
const chartHeight = 220;

// chartValue is series d's figure in second s, or null (as Series.Value).
function chartValue(s, d) {
  const o = d.from === "proc" ? (s.procs || []).find(p => p.name === d.proc) : s[d.from];
  const v = o ? o[d.key] : undefined;
  return v === undefined || v === null ? null : v * (d.scale || 1);
}

// chartLines are the lines chart c draws over secs (as Chart.Lines): a
// per-process chart has its series for each process, sorted by name.
function chartLines(c, secs) {
  if (!c.per_proc) return c.series;
  const names = new Set();
  for (const s of secs) for (const p of s.procs || []) names.add(p.name);
  const out = [];
  for (const n of [...names].sort()) {
    for (const d of c.series) out.push(Object.assign({}, d, { label: n + " " + d.label, proc: n }));
  }
  return out;
}

function chartWidth(container) {
  return Math.max(520, Math.min(900, (container.clientWidth || 1100) / 2 - 24));
}

// phaseColor is the fill of a phase: the load client's phases (ramp, load,
// drain) on the dashboard, a run's phases ("phase 1: connect + hold",
// "phase 2: 30,000/s", ..., "settle") in a report.
const phaseFills = ["rgb(255,235,180)", "rgb(210,240,210)", "rgb(255,215,200)", "rgb(230,215,245)", "rgb(200,235,240)"];
function phaseColor(name) {
  if (phaseFill[name]) return phaseFill[name];
  if (name === "settle") return phaseFill.drain;
  const m = /^phase (\d+)/.exec(name || "");
  return m ? phaseFills[(Number(m[1]) - 1) % phaseFills.length] : null;
}

// shadePhases paints the seconds of each phase behind the lines and names
// each band at its top (the plot leaves room there); phase(i) is the phase
// of the i-th x. The names drawn are also in the chart's data-phases.
function shadePhases(phase) {
  return u => {
    const xs = u.data[0], ctx = u.ctx, b = u.bbox, names = [];
    ctx.save();
    ctx.beginPath();
    ctx.rect(b.left, b.top, b.width, b.height);
    ctx.clip();
    const px = Math.round(11 * devicePixelRatio);
    ctx.font = px + "px system-ui, sans-serif";
    ctx.textBaseline = "top";
    for (let i = 0; i < xs.length;) {
      let j = i;
      while (j + 1 < xs.length && phase(j + 1) === phase(i)) j++;
      const name = phase(i), fill = phaseColor(name);
      if (fill) {
        const x0 = u.valToPos(xs[i] - 0.5, "x", true), x1 = u.valToPos(xs[j] + 0.5, "x", true);
        ctx.fillStyle = fill;
        ctx.fillRect(x0, b.top, x1 - x0, b.height);
        names.push(name);
        // The name, cut to the band's width, in the band's top margin.
        ctx.save();
        ctx.beginPath();
        ctx.rect(x0, b.top, x1 - x0, b.height);
        ctx.clip();
        ctx.fillStyle = "#444";
        // A band too narrow for "phase 1: connect + hold" shows "phase 1".
        const room = x1 - x0 - 6 * devicePixelRatio;
        const text = ctx.measureText(name).width > room ? name.split(":")[0] : name;
        ctx.fillText(text, x0 + 3 * devicePixelRatio, b.top + 2 * devicePixelRatio);
        ctx.restore();
      }
      i = j + 1;
    }
    ctx.restore();
    u.root.dataset.phases = names.join("|");
  };
}

// axisSize fits the y axis to its longest value (1,000,000 connections).
function axisSize(u, values, i, cycle) {
  const axis = u.axes[i];
  if (cycle > 1) return axis._size;
  let size = axis.ticks.size + axis.gap;
  const longest = (values || []).reduce((a, v) => v.length > a.length ? v : a, "");
  if (longest !== "") {
    u.ctx.font = axis.font[0];
    size += u.ctx.measureText(longest).width / devicePixelRatio;
  }
  return Math.ceil(size);
}

// newChart appends a chart element for chart c with the given line labels
// to container and returns {plot, el}; phase(i) gives the phase of the i-th
// x for a chart that shades them.
function newChart(container, c, labels, phase) {
  const el = document.createElement("div");
  el.className = "chart";
  el.id = "chart-" + c.id;
  container.appendChild(el);
  const opts = {
    title: c.title, width: chartWidth(container), height: chartHeight,
    // A shaded chart leaves room at the top for the phases' names.
    scales: { x: { time: true }, y: { range: (u, lo, hi) => [Math.min(0, lo), hi > 0 ? hi * (c.phases ? 1.2 : 1.08) : 1] } },
    series: [{}].concat(labels.map((l, i) => ({ label: l, stroke: chartPalette[i % chartPalette.length], width: 1.5, spanGaps: false }))),
    axes: [{}, { size: axisSize, label: c.unit || undefined }],
    hooks: c.phases && phase ? { drawClear: [shadePhases(phase)] } : {},
  };
  const plot = new uPlot(opts, [[]].concat(labels.map(() => [])), el);
  return { plot, el };
}

// fitCharts resizes the charts when the window does.
function fitCharts(container, plots) {
  window.addEventListener("resize", () => {
    for (const p of plots()) p.setSize({ width: chartWidth(container), height: chartHeight });
  });
}
