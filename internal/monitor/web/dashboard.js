// hongbao monitor dashboard: polls /api/series every second and draws the
// merged per-second series with uPlot. No external resources.
"use strict";

const KEEP = 600; // seconds on screen
const data = []; // merged seconds, oldest first
let last = 0;
const charts = {};

const palette = ["#c0392b", "#2980b9", "#27ae60", "#8e44ad", "#d35400", "#16a085", "#7f8c8d", "#f1c40f", "#2c3e50", "#e84393"];

function v(obj, k) { return obj && obj[k] !== undefined ? obj[k] : null; }

// Fixed charts: title, unit, series [label, function(second) -> value].
const fixed = [
  ["Shakes per second: sent by clients vs. answered by the server", "/s", [
    ["client sent", s => v(s.client, "sent")],
    ["server answered", s => v(s.server, "shakes")],
    ["server got", s => v(s.server, "got")],
    ["server none", s => v(s.server, "none")],
    ["server all taken", s => v(s.server, "all_taken")],
    ["server overloaded", s => v(s.server, "overloaded")],
    ["client timeouts", s => v(s.client, "timeouts")],
  ]],
  ["Connections", "", [
    ["server connections", s => v(s.server, "connections")],
    ["server users online", s => v(s.server, "online")],
    ["client connections", s => v(s.client, "connections")],
  ]],
  ["Packets per second: issued vs. received", "/s", [
    ["issued (server)", s => v(s.server, "issued")],
    ["granted (server)", s => v(s.server, "got")],
    ["received (clients)", s => v(s.client, "got")],
    ["waiting (server)", s => v(s.server, "waiting")],
    ["group sent (server)", s => v(s.server, "group_sent")],
    ["group shares granted (server)", s => v(s.server, "group_shares")],
    ["group refunds (server)", s => v(s.server, "group_refunds")],
    ["group pushes sent (server)", s => v(s.server, "group_pushes")],
    ["group pushes received (clients)", s => v(s.client, "pushes")],
    ["group opens (clients)", s => v(s.client, "opens")],
  ]],
  ["Amounts per second (cents)", "¢/s", [
    ["issued (server)", s => v(s.server, "issued_cents")],
    ["granted (server)", s => v(s.server, "granted_cents")],
    ["received (clients)", s => v(s.client, "amount_cents")],
    ["group sent (server)", s => v(s.server, "group_sent_cents")],
    ["group shares granted (server)", s => v(s.server, "group_shares_cents")],
    ["group refunded (server)", s => v(s.server, "group_refunded_cents")],
    ["group opened (clients)", s => v(s.client, "opened_cents")],
  ]],
  ["Requests and disconnects per second (server)", "/s", [
    ["requests", s => v(s.server, "requests")],
    ["logins", s => v(s.server, "logins")],
    ["errors", s => v(s.server, "errors")],
    ["disconnects", s => v(s.server, "closed")],
    ["client hang-ups", s => v(s.server, "disconnects_hangup")],
    ["replaced", s => v(s.server, "disconnects_replaced")],
    ["slow readers", s => v(s.server, "disconnects_slow_reader")],
    ["shed, server full", s => v(s.server, "disconnects_over_limit")],
  ]],
  ["Latency (ms, clients, merged)", "ms", [
    ["p50", s => s.latency ? s.latency.p50_us / 1000 : null],
    ["p99", s => s.latency ? s.latency.p99_us / 1000 : null],
    ["p99.9", s => s.latency ? s.latency.p999_us / 1000 : null],
  ]],
  ["Network (machine, /proc/net/dev)", "/s", [
    ["rx MB/s", s => s.net.rx_bytes / 1e6],
    ["tx MB/s", s => s.net.tx_bytes / 1e6],
    ["rx kpackets/s", s => s.net.rx_packets / 1e3],
    ["tx kpackets/s", s => s.net.tx_packets / 1e3],
  ]],
];

// Per-process charts: one series per process name.
const perProc = [
  ["CPU per process (cores)", p => p.cpu_s],
  ["Memory per process (RSS, MB)", p => p.rss_bytes / 1048576],
];

function procNames() {
  const names = new Set();
  for (const s of data) for (const p of s.procs) names.add(p.name);
  return [...names].sort();
}

function width() {
  const el = document.getElementById("charts");
  return Math.max(520, Math.min(900, (el.clientWidth || 1100) / 2 - 24));
}

function makeChart(id, title, labels) {
  const old = charts[id];
  if (old) { old.plot.destroy(); old.el.remove(); }
  const el = document.createElement("div");
  el.className = "chart";
  el.id = "chart-" + id;
  document.getElementById("charts").appendChild(el);
  const opts = {
    title, width: width(), height: 220,
    scales: { x: { time: true }, y: { range: (u, lo, hi) => [Math.min(0, lo), hi > 0 ? hi * 1.08 : 1] } },
    series: [{}].concat(labels.map((l, i) => ({ label: l, stroke: palette[i % palette.length], width: 1.5, spanGaps: false }))),
    axes: [{}, { size: 60 }],
  };
  const plot = new uPlot(opts, [[]].concat(labels.map(() => [])), el);
  charts[id] = { plot, el, labels: labels.join("|") };
  return charts[id];
}

function render() {
  const xs = data.map(s => s.t);
  fixed.forEach(([title, unit, series], i) => {
    const id = "f" + i;
    const c = charts[id] || makeChart(id, title, series.map(x => x[0]));
    const cols = series.map(([, f]) => data.map(s => f(s)));
    c.plot.setData([xs].concat(cols));
    c.el.dataset.points = xs.length;
  });
  const names = procNames();
  perProc.forEach(([title, f], i) => {
    const id = "p" + i;
    let c = charts[id];
    if (!c || c.labels !== names.join("|")) c = makeChart(id, title, names);
    const cols = names.map(n => data.map(s => {
      const p = s.procs.find(p => p.name === n);
      return p ? f(p) : null;
    }));
    c.plot.setData([xs].concat(cols));
    c.el.dataset.points = xs.length;
  });
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
window.addEventListener("resize", () => { for (const k in charts) charts[k].plot.setSize({ width: width(), height: 220 }); });
