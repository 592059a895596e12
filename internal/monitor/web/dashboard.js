// hongbao monitor dashboard: polls /api/series every second and draws the
// merged per-second series with uPlot (charts.js). No external resources.
"use strict";

const KEEP = 600; // seconds on screen
const data = []; // merged seconds, oldest first
let last = 0;

function v(obj, k) { return obj && obj[k] !== undefined ? obj[k] : null; }

// The charts (internal/monitor/charts.go, from api/charts) and their uPlots.
let chartDefs = null;
const charts = {};

function render() {
  const container = document.getElementById("charts");
  const xs = data.map(s => s.t);
  for (const c of chartDefs) {
    const lines = chartLines(c, data);
    const labels = lines.map(d => d.label).join("|");
    let ch = charts[c.id];
    if (!ch || ch.labels !== labels) {
      const next = ch ? ch.el.nextSibling : null;
      if (ch) { ch.plot.destroy(); ch.el.remove(); }
      ch = newChart(container, c, lines.map(d => d.label), i => data[i] && data[i].phase);
      if (next) container.insertBefore(ch.el, next);
      ch.labels = labels;
      charts[c.id] = ch;
    }
    ch.plot.setData([xs].concat(lines.map(d => data.map(s => chartValue(s, d)))));
    ch.el.dataset.points = xs.length;
  }
}

function fmt(x, d) {
  if (x === null || x === undefined || isNaN(x)) return "–";
  return Number(x).toLocaleString("en-US", { maximumFractionDigits: d || 0 });
}

function setText(id, text) { document.getElementById(id).textContent = text; }

function tiles(status) {
  const s = data[data.length - 1];
  if (!s) return;
  setText("v-sent", fmt(v(s.client, "sent")));
  setText("v-shakes", fmt(v(s.server, "shakes")));
  setText("v-conns", fmt(v(s.server, "connections")));
  setText("v-issued", fmt(v(s.server, "issued")));
  setText("v-got", fmt(v(s.server, "got")) + " / " + fmt(v(s.client, "got")));
  setText("v-cents", fmt(v(s.server, "granted_cents")));
  setText("v-p99", s.latency ? fmt(s.latency.p99_us / 1000, 2) : "–");
  setText("v-procs", String(s.procs.length) + (s.missing ? " (" + s.missing.length + " missing)" : ""));
  setText("phase", s.phase || "running");
  const age = status ? status.now - s.t : 0;
  setText("status", "second " + new Date(s.t * 1000).toLocaleTimeString() + " (" + age + " s ago), " +
    data.length + " seconds, " + (status ? status.received : 0) + " samples received");
  document.body.dataset.latest = s.t;
}

function procTable(status) {
  const tb = document.querySelector("#procs tbody");
  const s = data[data.length - 1];
  const now = new Map(s ? s.procs.map(p => [p.name, p]) : []);
  tb.innerHTML = "";
  for (const p of (status ? status.procs : [])) {
    const q = now.get(p.name) || {};
    const tr = document.createElement("tr");
    for (const x of [p.name, p.kind, p.pid, fmt(q.cpu_s, 2), fmt(q.rss_bytes / 1048576, 1), fmt(q.goroutines),
      fmt(q.gc_pause_s * 1000, 2), fmt(p.samples), fmt(p.late), p.gone ? "gone" : (now.has(p.name) ? "reporting" : "MISSING")]) {
      const td = document.createElement("td");
      td.textContent = x;
      tr.appendChild(td);
    }
    tb.appendChild(tr);
  }
  const ul = document.getElementById("missing");
  const miss = data.filter(s => s.missing && s.missing.length).slice(-20);
  ul.innerHTML = "";
  if (!miss.length) ul.innerHTML = "<li>none</li>";
  for (const s of miss) {
    const li = document.createElement("li");
    li.textContent = new Date(s.t * 1000).toLocaleTimeString() + ": " + s.missing.join(", ");
    ul.appendChild(li);
  }
}

async function poll() {
  try {
    if (!chartDefs) chartDefs = await fetch("api/charts", { cache: "no-store" }).then(r => r.json());
    const [series, status] = await Promise.all([
      fetch("api/series?since=" + last + "&last=" + KEEP, { cache: "no-store" }).then(r => r.json()),
      fetch("api/latest", { cache: "no-store" }).then(r => r.json()),
    ]);
    for (const s of series || []) {
      // An amended second replaces its earlier version.
      if (data.length && s.t <= data[data.length - 1].t) {
        const i = data.findIndex(x => x.t === s.t);
        if (i >= 0) { data[i] = s; continue; }
      }
      data.push(s);
      last = Math.max(last, s.t);
    }
    // Seconds amended after we saw them come again through /api/latest only
    // for the newest; older amendments show on reload.
    while (data.length > KEEP) data.shift();
    if (data.length) { render(); tiles(status); procTable(status); }
    document.body.dataset.polls = (Number(document.body.dataset.polls || 0) + 1).toString();
  } catch (e) {
    setText("status", "monitor unreachable: " + e);
  }
}

poll();
setInterval(poll, 1000);
fitCharts(document.getElementById("charts"), () => Object.values(charts).map(c => c.plot));
