// The dashboard page ipcxd serves at "/": one self-contained file (it must work offline, and
// the Content-Security-Policy of http.cpp forbids loading anything else). Every string from
// the API reaches the DOM through textContent or setAttribute, never as markup: queue and
// service names are chosen by any local user.
#include "broker/http.hpp"

namespace ipcx::broker {

namespace {

constexpr std::string_view page = R"html(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>ipcxd</title>
<style>
:root { color-scheme: light dark; --bg: #f6f7f9; --fg: #1c1f24; --muted: #6b7280; --card: #ffffff;
        --line: #e3e6ea; --grid: #eceef1; --pub: #2563eb; --del: #16a34a; --ack: #d97706; }
@media (prefers-color-scheme: dark) {
  :root { --bg: #101318; --fg: #e5e7eb; --muted: #9ca3af; --card: #181c23; --line: #2a303b; --grid: #222833; }
}
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; background: var(--bg); color: var(--fg); }
header { display: flex; flex-wrap: wrap; gap: 6px 20px; align-items: baseline; padding: 12px 20px;
         background: var(--card); border-bottom: 1px solid var(--line); }
header h1 { font-size: 18px; margin: 0 8px 0 0; }
.kv { color: var(--muted); }
.kv b { color: var(--fg); font-weight: 600; overflow-wrap: anywhere; }
#live-status { padding: 1px 9px; border-radius: 10px; background: #9ca3af; color: #fff; font-weight: 600; font-size: 12px; }
#live-status.live { background: #16a34a; }
#live-status.offline { background: #dc2626; }
main { padding: 16px 20px; display: grid; gap: 16px; max-width: 1400px; }
section { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 12px 16px; overflow-x: auto; }
h2 { font-size: 15px; margin: 0 0 8px; }
h2 .kv { font-weight: normal; font-size: 13px; margin-left: 6px; }
.legend { display: flex; gap: 18px; margin-bottom: 6px; color: var(--muted); }
.legend b { color: var(--fg); font-variant-numeric: tabular-nums; }
.sw { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-right: 5px; }
#chart { width: 100%; height: 240px; display: block; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 4px 10px; border-bottom: 1px solid var(--line); white-space: nowrap; }
th { color: var(--muted); font-weight: 600; font-size: 12px; }
.num { text-align: right; font-variant-numeric: tabular-nums; }
td.name { max-width: 340px; overflow: hidden; text-overflow: ellipsis; font-weight: 600; }
td.url { max-width: 420px; overflow: hidden; text-overflow: ellipsis; }
tr.empty td { color: var(--muted); font-style: italic; }
canvas.spark { width: 120px; height: 24px; display: block; }
</style>
</head>
<body>
<header>
  <h1>ipcxd</h1>
  <span id="live-status">connecting</span>
  <span class="kv">pid <b id="pid">-</b></span>
  <span class="kv">version <b id="version">-</b></span>
  <span class="kv">uptime <b id="uptime">-</b></span>
  <span class="kv">socket <b id="socket">-</b></span>
  <span class="kv">connections <b id="connections">-</b></span>
  <span class="kv">updated <b id="updated">-</b></span>
</header>
<main>
  <section>
    <h2>Message rates <span class="kv">per second, all queues</span></h2>
    <div class="legend">
      <span><i class="sw" style="background: var(--pub)"></i>published <b id="rate-published">0</b></span>
      <span><i class="sw" style="background: var(--del)"></i>delivered <b id="rate-delivered">0</b></span>
      <span><i class="sw" style="background: var(--ack)"></i>acked <b id="rate-acked">0</b></span>
    </div>
    <canvas id="chart"></canvas>
  </section>
  <section>
    <h2>Queues <span class="kv" id="queue-count"></span></h2>
    <table id="queues">
      <thead><tr><th>name</th><th class="num">ready</th><th class="num">unacked</th><th class="num">consumers</th>
        <th class="num">published</th><th class="num">acked</th><th class="num">dead-lettered</th><th>sync</th>
        <th>published / acked per second</th></tr></thead>
      <tbody></tbody>
    </table>
  </section>
  <section>
    <h2>Services <span class="kv" id="service-count"></span></h2>
    <table id="services">
      <thead><tr><th>name</th><th>url</th><th class="num">pid</th><th class="num">uid</th><th>since</th></tr></thead>
      <tbody></tbody>
    </table>
  </section>
</main>
<script>
"use strict";
(() => {
  const POLL_MS = 1000;
  const byId = (id) => document.getElementById(id);
  const color = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  const list = (v) => (Array.isArray(v) ? v : []);
  const isNum = (v) => typeof v === "number" && Number.isFinite(v);

  const count = (v) => (isNum(v) ? v.toLocaleString("en-US") : "-");
  const str = (v) => (v === undefined || v === null ? "-" : String(v));
  const rate = (v) => (!isNum(v) ? "0" : v >= 100 ? Math.round(v).toLocaleString("en-US") : v.toFixed(v >= 10 ? 1 : 2));
  const when = (ms) => (isNum(ms) ? new Date(ms).toLocaleString() : "-");
  function duration(ms) {
    if (!isNum(ms)) return "-";
    let s = Math.floor(ms / 1000);
    const d = Math.floor(s / 86400); s %= 86400;
    const h = Math.floor(s / 3600); s %= 3600;
    const m = Math.floor(s / 60); s %= 60;
    return (d ? d + "d " : "") + (d || h ? h + "h " : "") + (d || h || m ? m + "m " : "") + s + "s";
  }
  function setText(el, value) {
    if (el.textContent !== value) el.textContent = value;
  }

  async function getJSON(path) {
    const r = await fetch(path, { cache: "no-store", headers: { Accept: "application/json" } });
    if (!r.ok) throw new Error(path + ": HTTP " + r.status);
    return r.json();
  }

  // ---- charts ----

  // A canvas sized for the device's pixels; returns its context and size in CSS pixels.
  function prepare(canvas) {
    const ratio = window.devicePixelRatio || 1;
    const w = Math.max(canvas.clientWidth, 10), h = Math.max(canvas.clientHeight, 10);
    if (canvas.width !== Math.round(w * ratio) || canvas.height !== Math.round(h * ratio)) {
      canvas.width = Math.round(w * ratio);
      canvas.height = Math.round(h * ratio);
    }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, w, h);
    return { ctx, w, h };
  }

  function niceCeiling(v) {
    if (!(v > 0)) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
    return 10 * p;
  }

  function polyline(ctx, points, stroke, width) {
    if (points.length === 0) return;
    ctx.strokeStyle = stroke;
    ctx.lineWidth = width;
    ctx.lineJoin = "round";
    ctx.beginPath();
    points.forEach(([x, y], i) => (i ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
    if (points.length === 1) ctx.lineTo(points[0][0] + 1, points[0][1]);
    ctx.stroke();
  }

  // series: [{pick: sample => number, color}]; samples: oldest first, each with t (ms).
  function drawLines(canvas, samples, series, axes) {
    const { ctx, w, h } = prepare(canvas);
    const pad = axes ? { l: 52, r: 12, t: 10, b: 22 } : { l: 1, r: 1, t: 2, b: 2 };
    const pw = w - pad.l - pad.r, ph = h - pad.t - pad.b;
    const t1 = samples.length ? samples[samples.length - 1].t : Date.now();
    const t0 = samples.length > 1 ? samples[0].t : t1 - 60000;
    const span = Math.max(t1 - t0, 1);
    let top = 0;
    for (const s of samples) for (const line of series) top = Math.max(top, line.pick(s));
    top = niceCeiling(top);
    const x = (t) => pad.l + ((t - t0) / span) * pw;
    const y = (v) => pad.t + ph - (Math.min(v, top) / top) * ph;
    if (axes) {
      ctx.font = "11px system-ui, sans-serif";
      ctx.fillStyle = color("--muted");
      ctx.strokeStyle = color("--grid");
      ctx.lineWidth = 1;
      ctx.textAlign = "right";
      ctx.textBaseline = "middle";
      for (let i = 0; i <= 4; ++i) {
        const v = (top * i) / 4, yy = Math.round(y(v)) + 0.5;
        ctx.beginPath(); ctx.moveTo(pad.l, yy); ctx.lineTo(w - pad.r, yy); ctx.stroke();
        ctx.fillText(rate(v), pad.l - 6, yy);
      }
      ctx.textBaseline = "top";
      ctx.textAlign = "left";
      ctx.fillText("-" + Math.round(span / 1000) + "s", pad.l, h - pad.b + 6);
      ctx.textAlign = "right";
      ctx.fillText("now", w - pad.r, h - pad.b + 6);
      if (samples.length < 2) {
        ctx.textAlign = "center";
        ctx.textBaseline = "middle";
        ctx.fillText("collecting samples...", pad.l + pw / 2, pad.t + ph / 2);
      }
    }
    for (const line of series)
      polyline(ctx, samples.map((s) => [x(s.t), y(line.pick(s))]), color(line.color), axes ? 2 : 1.25);
  }

  const num = (v) => (isNum(v) ? v : 0);
  const totals = [
    { pick: (s) => num(s.published), color: "--pub" },
    { pick: (s) => num(s.delivered), color: "--del" },
    { pick: (s) => num(s.acked), color: "--ack" },
  ];
  function queueSeries(name) {
    const of = (s) => (s.queues && Object.prototype.hasOwnProperty.call(s.queues, name) ? s.queues[name] : {});
    return [
      { pick: (s) => num(of(s).published), color: "--pub" },
      { pick: (s) => num(of(s).acked), color: "--ack" },
    ];
  }

  // ---- tables: one row per item, keyed by name in a data attribute, updated in place ----

  function syncRows(tbody, items, attr, columns, spark, emptyText) {
    const rows = new Map();
    for (const tr of tbody.querySelectorAll("tr")) {
      if (tr.hasAttribute(attr)) rows.set(tr.getAttribute(attr), tr);
      else tr.remove();
    }
    const seen = new Set();
    let at = 0;
    for (const item of items) {
      if (!item || typeof item !== "object" || item.name === undefined || item.name === null) continue;
      const name = String(item.name);
      if (seen.has(name)) continue;
      seen.add(name);
      let tr = rows.get(name);
      if (!tr) {
        tr = document.createElement("tr");
        tr.setAttribute(attr, name);
        for (const c of columns) {
          const td = document.createElement("td");
          if (c.cls) td.className = c.cls;
          tr.appendChild(td);
        }
        if (spark) {
          const td = document.createElement("td");
          const canvas = document.createElement("canvas");
          canvas.className = "spark";
          td.appendChild(canvas);
          tr.appendChild(td);
        }
      }
      columns.forEach((c, i) => setText(tr.children[i], c.value(item)));
      if (spark) spark(tr.lastChild.firstChild, name);
      if (tbody.children[at] !== tr) tbody.insertBefore(tr, tbody.children[at] || null);
      ++at;
    }
    for (const [name, tr] of rows) if (!seen.has(name)) tr.remove();
    if (at === 0) {
      const tr = document.createElement("tr");
      tr.className = "empty";
      const td = document.createElement("td");
      td.colSpan = columns.length + (spark ? 1 : 0);
      td.textContent = emptyText;
      tr.appendChild(td);
      tbody.appendChild(tr);
    }
    return at;
  }

  const queueColumns = [
    { value: (q) => String(q.name), cls: "name" },
    { value: (q) => count(q.ready), cls: "num" },
    { value: (q) => count(q.unacked), cls: "num" },
    { value: (q) => count(q.consumers), cls: "num" },
    { value: (q) => count(q.published), cls: "num" },
    { value: (q) => count(q.acked), cls: "num" },
    { value: (q) => count(q.dead_lettered), cls: "num" },
    { value: (q) => str(q.sync) },
  ];
  const serviceColumns = [
    { value: (s) => String(s.name), cls: "name" },
    { value: (s) => str(s.url), cls: "url" },
    { value: (s) => str(s.pid), cls: "num" },
    { value: (s) => str(s.uid), cls: "num" },
    { value: (s) => when(s.registered_ms) },
  ];

  // ---- polling ----

  let samples = [], lastT = null, capacity = 300, emptyPolls = 0;
  const live = byId("live-status");

  // The whole history once, then only what is newer: with many queues it is large.
  async function pollRates() {
    const r = await getJSON(lastT === null ? "api/rates" : "api/rates?since=" + lastT);
    if (r && isNum(r.capacity) && r.capacity > 0) capacity = r.capacity;
    const fresh = list(r && r.samples).filter((s) => s && isNum(s.t));
    samples = lastT === null ? fresh : samples.concat(fresh);
    if (samples.length > capacity) samples = samples.slice(samples.length - capacity);
    // A daemon whose clock stepped back has nothing "newer" for a long while: start over.
    emptyPolls = fresh.length ? 0 : emptyPolls + 1;
    if (emptyPolls > 5) {
      lastT = null;
      emptyPolls = 0;
    } else if (samples.length) {
      lastT = samples[samples.length - 1].t;
    }
  }

  function render(status, queues, services) {
    status = status && typeof status === "object" ? status : {};
    setText(byId("pid"), str(status.pid));
    setText(byId("version"), str(status.version));
    setText(byId("uptime"), duration(status.uptime_ms));
    setText(byId("socket"), str(status.socket));
    setText(byId("connections"), str(status.connections));
    if (typeof status.pid !== "undefined") document.title = "ipcxd " + String(status.pid);

    const last = samples.length ? samples[samples.length - 1] : {};
    setText(byId("rate-published"), rate(last.published));
    setText(byId("rate-delivered"), rate(last.delivered));
    setText(byId("rate-acked"), rate(last.acked));
    drawLines(byId("chart"), samples, totals, true);

    const nq = syncRows(byId("queues").tBodies[0], list(queues), "data-queue", queueColumns,
                        (canvas, name) => drawLines(canvas, samples, queueSeries(name), false), "no queues");
    setText(byId("queue-count"), String(nq));
    const ns = syncRows(byId("services").tBodies[0], list(services), "data-service", serviceColumns, null,
                        "no services registered");
    setText(byId("service-count"), String(ns));
  }

  let last = { status: {}, queues: [], services: [] };
  async function poll() {
    try {
      const [status, queues, services] = await Promise.all([
        getJSON("api/status"), getJSON("api/queues"), getJSON("api/services"), pollRates()]);
      last = { status, queues, services };
      render(status, queues, services);
      live.textContent = "live";
      live.className = "live";
      live.removeAttribute("title");
      setText(byId("updated"), new Date().toLocaleTimeString());
    } catch (e) {
      live.textContent = "offline";
      live.className = "offline";
      live.title = String(e && e.message ? e.message : e);
    } finally {
      setTimeout(poll, POLL_MS);
    }
  }

  window.addEventListener("resize", () => render(last.status, last.queues, last.services));
  poll();
})();
</script>
</body>
</html>
)html";

}  // namespace

std::string_view dashboard_html() noexcept { return page; }

}  // namespace ipcx::broker
