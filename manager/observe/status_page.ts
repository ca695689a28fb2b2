/**
 * The status page: one self-contained HTML document (inline CSS and script,
 * no external assets) used two ways.
 *
 * - Live, served by the status server at `/`: it polls `status` every
 *   second for counts, rate, ETA and the runners with their jobs, and
 *   `timeline` every few seconds (and once more when the run ends) for the
 *   Gantt chart and the throughput chart.
 * - Offline, written by `manager report --html`: the same page with the
 *   report and timeline embedded; it fetches nothing.
 *
 * Every value from the run (host names, command lines) is put in the page
 * as text (`textContent`), never as markup.
 *
 * @module
 */

import type { RunReport, Timeline } from "./report.ts";
import type { StatusSnapshot } from "./run_status.ts";

/** Data embedded in an offline page. */
export interface EmbeddedRun {
  /** The results directory, for the title. */
  resultsDir: string;
  /** The summary. */
  report: RunReport;
  /** The timeline. */
  timeline: Timeline;
  /** A status snapshot, if there is one. */
  status?: StatusSnapshot;
}

/** Embeds JSON in a `<script>` element safely: no `<` can end the element. */
function embedJson(value: unknown): string {
  return JSON.stringify(value).replace(/</g, "\\u003c").replace(/\u2028/g, "\\u2028").replace(/\u2029/g, "\\u2029");
}

/**
 * The page. Without `embedded` it is the live page (it polls `status` and
 * `timeline` relative to its own URL); with it, the offline report.
 */
export function renderStatusPage(embedded?: EmbeddedRun): string {
  const title = embedded === undefined ? "vico: live run" : `vico report: ${embedded.resultsDir}`;
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)}</title>
<style>${CSS}</style>
</head>
<body>
<header>
  <h1>vico</h1>
  <span id="state" class="badge">connecting…</span>
  <span id="source" class="muted"></span>
</header>
<section id="tiles">
  <div class="tile"><b id="n-total">–</b><span>jobs</span></div>
  <div class="tile"><b id="n-pending">–</b><span>pending</span></div>
  <div class="tile running"><b id="n-running">–</b><span>running</span></div>
  <div class="tile ok"><b id="n-done">–</b><span>done</span></div>
  <div class="tile failed"><b id="n-failed">–</b><span>failed</span></div>
  <div class="tile lost"><b id="n-lost">–</b><span>lost</span></div>
  <div class="tile"><b id="n-runners">–</b><span>runners</span></div>
  <div class="tile"><b id="rate">–</b><span>jobs/s (10 s)</span></div>
  <div class="tile"><b id="eta">–</b><span>ETA</span></div>
  <div class="tile"><b id="elapsed">–</b><span>elapsed</span></div>
</section>
<div id="bar" title="done, failed, running"><div id="bar-done"></div><div id="bar-failed"></div><div id="bar-running"></div></div>
<section id="runners-section">
  <h2>Runners</h2>
  <table id="runners"><thead><tr><th>host</th><th>kind</th><th>address</th><th class="num">workers</th><th class="num">settled</th>
  <th>joined</th><th>running jobs (line, for how long)</th></tr></thead><tbody></tbody></table>
  <p id="runners-note" class="muted"></p>
</section>
<section id="report-section" hidden>
  <h2>Summary</h2>
  <p id="report-line"></p>
  <table id="hosts"><thead><tr><th>host</th><th class="num">jobs</th><th class="num">ok</th><th class="num">retried</th>
  <th class="num">busy</th></tr></thead>
  <tbody></tbody></table>
  <h3>Exit status</h3><p id="statuses"></p>
  <h3>Slowest jobs</h3><ol id="slowest"></ol>
</section>
<section>
  <h2>Timeline <span class="legend"><i class="ok"></i>ok <i class="failed"></i>failed <i class="attempt"></i>retried
  <i class="lost"></i>lost <i class="running"></i>running</span></h2>
  <p id="timeline-note" class="muted">No job has finished yet.</p>
  <div class="chart"><svg id="gantt" xmlns="http://www.w3.org/2000/svg" width="100%" height="0"></svg></div>
  <h2>Throughput</h2>
  <p id="throughput-note" class="muted"></p>
  <div class="chart"><svg id="throughput" xmlns="http://www.w3.org/2000/svg" width="100%" height="0"></svg></div>
</section>
<script id="vico-data" type="application/json">${embedded === undefined ? "null" : embedJson(embedded)}</script>
<script>${SCRIPT}</script>
</body>
</html>
`;
}

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

const CSS = `
:root { --ok: #2e9d5b; --failed: #d64541; --lost: #8a8f98; --attempt: #e8a33d; --running: #3a78d8;
  --fg: #1d2330; --muted: #6b7280; --line: #e3e6ea; --bg: #fafbfc; }
* { box-sizing: border-box; }
body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); background: var(--bg);
  margin: 0 auto; padding: 16px 24px; max-width: 1400px; }
header { display: flex; align-items: baseline; gap: 12px; flex-wrap: wrap; }
h1 { margin: 0; font-size: 22px; } h2 { font-size: 16px; margin: 22px 0 6px; } h3 { font-size: 14px; margin: 12px 0 4px; }
.muted { color: var(--muted); }
.badge { padding: 2px 8px; border-radius: 10px; background: var(--line); font-size: 12px; }
.badge.running { background: #dbe7fb; color: #1f4f9c; } .badge.done { background: #d8f1e2; color: #1d6b3d; }
.badge.failed { background: #f8dcdb; color: #8f2420; } .badge.gone { background: #eee; color: #555; }
#tiles { display: flex; flex-wrap: wrap; gap: 8px; margin: 14px 0 8px; }
.tile { background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: 6px 12px; min-width: 92px; }
.tile b { display: block; font-size: 20px; font-variant-numeric: tabular-nums; }
.tile span { color: var(--muted); font-size: 12px; }
.tile.ok b { color: var(--ok); } .tile.failed b { color: var(--failed); } .tile.lost b { color: var(--lost); }
.tile.running b { color: var(--running); }
#bar { display: flex; height: 8px; background: var(--line); border-radius: 4px; overflow: hidden; }
#bar-done { background: var(--ok); } #bar-failed { background: var(--failed); } #bar-running { background: var(--running); }
#hosts { width: auto; min-width: 50%; }
table { border-collapse: collapse; width: 100%; background: #fff; font-size: 13px; }
th, td { text-align: left; padding: 3px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { color: var(--muted); font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.jobs span { display: inline-block; margin-right: 8px; white-space: nowrap; }
.chart { background: #fff; border: 1px solid var(--line); border-radius: 6px; overflow-x: auto; }
svg text { font: 11px system-ui, sans-serif; fill: var(--muted); }
svg text.host { fill: var(--fg); font-weight: 600; }
rect.job.ok { fill: var(--ok); } rect.job.failed { fill: var(--failed); } rect.job.lost { fill: var(--lost); }
rect.job.attempt { fill: var(--attempt); }
rect.job.running { fill: var(--running); opacity: 0.75; } rect.bar { fill: var(--ok); } rect.bar.failed { fill: var(--failed); }
line.grid { stroke: var(--line); } line.sep { stroke: #c9ced6; }
.legend { font-weight: normal; font-size: 12px; color: var(--muted); margin-left: 12px; }
.legend i { display: inline-block; width: 10px; height: 10px; margin: 0 3px 0 8px; border-radius: 2px; }
.legend i.ok { background: var(--ok); } .legend i.failed { background: var(--failed); }
.legend i.attempt { background: var(--attempt); } .legend i.running { background: var(--running); } .legend i.lost { background: var(--lost); }
`;

/** The page's script (plain ES2020, no dependencies). */
const SCRIPT = String.raw`
"use strict";
const SVG = "http://www.w3.org/2000/svg";
const $ = (id) => document.getElementById(id);
const embedded = JSON.parse($("vico-data").textContent || "null");
let lastStatus = null, lastTimeline = null, finishedSeen = false, timelineBusy = false, lastTimelineAt = 0;

function text(id, value) { $(id).textContent = value; }
function fmtDuration(s) {
  if (s === null || s === undefined || !isFinite(s)) return "–";
  if (s < 10) return s.toFixed(1) + "s";
  s = Math.round(s);
  if (s < 60) return s + "s";
  if (s < 3600) return Math.floor(s / 60) + "m" + String(s % 60).padStart(2, "0") + "s";
  return Math.floor(s / 3600) + "h" + String(Math.floor((s % 3600) / 60)).padStart(2, "0") + "m";
}
function fmtRate(r) { return r >= 10 ? r.toFixed(0) : r.toFixed(1); }
function el(tag, attrs, content) {
  const e = document.createElement(tag);
  for (const k in attrs || {}) e.setAttribute(k, attrs[k]);
  if (content !== undefined) e.textContent = content;
  return e;
}
function svgEl(tag, attrs, content) {
  const e = document.createElementNS(SVG, tag);
  for (const k in attrs || {}) e.setAttribute(k, attrs[k]);
  if (content !== undefined) e.textContent = content;
  return e;
}
function setState(label, cls) { const s = $("state"); s.textContent = label; s.className = "badge " + (cls || ""); }

function showCounts(j, extra) {
  text("n-total", j.total); text("n-pending", j.pending); text("n-running", j.running);
  text("n-done", j.done); text("n-failed", j.failed - (j.lost || 0)); text("n-lost", j.lost || 0);
  const pct = (n) => (j.total > 0 ? (100 * n) / j.total : 0) + "%";
  $("bar-done").style.width = pct(j.done);
  $("bar-failed").style.width = pct(j.failed);
  $("bar-running").style.width = pct(j.running);
  if (extra) {
    text("n-runners", extra.runners); text("rate", fmtRate(extra.rate));
    text("eta", extra.finished ? "done" : fmtDuration(extra.etaSeconds)); text("elapsed", fmtDuration(extra.elapsedSeconds));
  }
}

function showStatus(s) {
  lastStatus = s;
  showCounts(s.jobs, s);
  text("source", s.source + " → " + s.resultsDir);
  const failed = s.jobs.failed > 0;
  if (s.finished) setState(failed ? "finished, " + s.jobs.failed + " failed" : "finished", failed ? "failed" : "done");
  else setState(s.stopping ? "stopping" : "running", "running");
  const body = $("runners").tBodies[0];
  body.textContent = "";
  const now = Date.parse(s.now);
  for (const r of s.runnerList.slice(0, 300)) {
    const tr = el("tr", { class: "runner", "data-host": r.host });
    tr.append(el("td", {}, r.host), el("td", {}, r.protocol), el("td", {}, r.peer),
      el("td", { class: "num" }, String(r.workers)), el("td", { class: "num" }, String(r.settled)),
      el("td", {}, fmtDuration((now - Date.parse(r.joined)) / 1000) + " ago"));
    const jobs = el("td", { class: "jobs" });
    for (const job of r.jobs) {
      const since = job.since === null ? "" : " (" + fmtDuration((now - Date.parse(job.since)) / 1000) + ")";
      const span = el("span", { class: "job", "data-line": String(job.line), title: job.name }, "line " + job.line + since);
      jobs.append(span);
    }
    if (r.running > r.jobs.length) jobs.append(el("span", {}, "… " + (r.running - r.jobs.length) + " more"));
    tr.append(jobs);
    body.append(tr);
  }
  const shown = Math.min(300, s.runnerList.length);
  text("runners-note", s.runners === 0 ? "No runner connected." : s.runners > shown ? shown + " of " + s.runners + " runners shown." : "");
}

function showReport(r, dir) {
  $("report-section").hidden = false;
  $("runners-section").hidden = true;
  const failed = r.failed + (r.timedOut || 0) + r.lost;
  setState(failed > 0 ? "report, " + failed + " failed" : "report", failed > 0 ? "failed" : "done");
  text("source", (r.source || "?") + " → " + dir);
  showCounts({ total: r.jobs, pending: 0, running: 0, done: r.ok, failed, lost: r.lost });
  text("n-runners", r.hosts.length); text("rate", r.wallSeconds > 0 ? fmtRate(r.jobs / r.wallSeconds) : "–");
  text("eta", "done"); text("elapsed", fmtDuration(r.wallSeconds));
  $("rate").nextElementSibling.textContent = "jobs/s (overall)";
  $("n-runners").nextElementSibling.textContent = "hosts";
  text("report-line", r.jobs + " job(s) settled in " + r.runs + " run(s): " + r.ok + " ok, " + r.failed + " failed, " +
    (r.timedOut ? r.timedOut + " timed out, " : "") + r.lost + " lost; " + r.retried + " retried attempt(s). " +
    "Wall time " + fmtDuration(r.wallSeconds) + ", busy " + fmtDuration(r.busySeconds) + ".");
  const body = $("hosts").tBodies[0];
  for (const h of r.hosts) {
    const tr = el("tr", { class: "host", "data-host": h.host });
    tr.append(el("td", {}, h.host), el("td", { class: "num" }, String(h.jobs)), el("td", { class: "num" }, String(h.ok)),
      el("td", { class: "num" }, String(h.attempts)), el("td", { class: "num" }, fmtDuration(h.busySeconds)));
    body.append(tr);
  }
  text("statuses", r.statuses.map((p) => (p[0] === "lost" ? "lost" : "exit " + p[0]) + ": " + p[1]).join(", ") || "–");
  for (const s of r.slowest) {
    $("slowest").append(el("li", {}, fmtDuration(s.seconds) + " — line " + s.line + " on " + s.host + " (" +
      (s.status === null ? "lost" : (s.timedOut ? "timed out, exit " : "exit ") + s.status) + "): " + s.name));
  }
}

function niceStep(span, target) {
  const raw = span / Math.max(1, target);
  const steps = [0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 43200, 86400];
  for (const s of steps) if (s * 1000 >= raw) return s * 1000;
  return Math.ceil(raw / 86400000) * 86400000;
}
function axis(svg, x0, x1, y, t0, t1, height) {
  const step = niceStep(t1 - t0, 8);
  const scale = (t) => x0 + ((t - t0) / Math.max(1, t1 - t0)) * (x1 - x0);
  for (let t = Math.ceil(t0 / step) * step; t <= t1; t += step) {
    const x = scale(t);
    svg.append(svgEl("line", { class: "grid", x1: x, x2: x, y1: 0, y2: height }));
    if (x < x1 - 30) svg.append(svgEl("text", { x: x + 2, y: y }, fmtDuration(t / 1000)));
  }
}
function statusClass(j) {
  if (j.kind === "attempt" || j.kind === "running") return j.kind;
  if (j.status === null) return "lost";
  return j.status === 0 ? "ok" : "failed";
}

// The jobs running now (from the status) added to the recorded ones; each
// host's jobs are packed into lanes again, all together in order of start,
// so a long job still running keeps its lane.
function withRunning(t, s) {
  if (s === null || s.finished) return t;
  const base = t || { version: 1, origin: s.started, span: 0, hosts: [], jobs: [], total: 0, omitted: 0,
    throughput: { bucketMs: 1000, ok: [], failed: [] } };
  const origin = Date.parse(base.origin), now = Date.parse(s.now) - origin;
  const hosts = base.hosts.map((h) => ({ name: h.name, lanes: h.lanes }));
  const index = new Map(hosts.map((h, i) => [h.name, i]));
  const jobs = base.jobs.map((j) => Object.assign({}, j));
  let running = 0;
  for (const r of s.runnerList) {
    if (!index.has(r.host)) { index.set(r.host, hosts.length); hosts.push({ name: r.host, lanes: 0 }); }
    for (const j of r.jobs) {
      const start = j.since === null ? 0 : Math.max(0, Date.parse(j.since) - origin);
      jobs.push({ line: j.line, name: j.name, host: index.get(r.host), lane: 0, start, end: Math.max(now, start),
        status: null, attempt: 1, kind: "running" });
      running++;
    }
  }
  if (running === 0) return Object.assign({}, base, { hosts, jobs });
  const byHost = hosts.map(() => []);
  for (const j of jobs) byHost[j.host].push(j);
  byHost.forEach((list, h) => {
    list.sort((a, b) => a.start - b.start || a.end - b.end);
    const ends = [];
    for (const j of list) {
      let lane = ends.findIndex((e) => e <= j.start);
      if (lane === -1) lane = ends.push(0) - 1;
      ends[lane] = j.end;
      j.lane = lane;
    }
    hosts[h].lanes = ends.length;
  });
  return Object.assign({}, base, { hosts, jobs });
}

function drawTimeline(t) {
  const gantt = $("gantt"), tp = $("throughput");
  gantt.textContent = ""; tp.textContent = "";
  if (t.jobs.length === 0) { gantt.setAttribute("height", "0"); tp.setAttribute("height", "0"); return; }
  const running = t.jobs.filter((j) => j.kind === "running").length;
  text("timeline-note", (t.omitted > 0 ? "The last " + (t.jobs.length - running) + " of " + t.total + " jobs and attempts" :
    t.total + " job(s) and attempt(s)") + (running > 0 ? " and " + running + " running" : "") +
    " by host and lane (a lane is one job at a time on that host), " +
    "from hand-out to result, since " + new Date(t.origin).toLocaleString() + ".");
  const W = Math.max(640, gantt.parentElement.clientWidth - 2), L = 150, R = 12, laneH = 12, gap = 2, hostGap = 8, top = 18;
  // Throughput: jobs settled per bucket over the whole run, merged to at most 120 bars.
  const b = { bucketMs: t.throughput.bucketMs, ok: t.throughput.ok.slice(), failed: t.throughput.failed.slice() };
  const pair = (a) => a.reduce((out, v, i) => { if (i % 2 === 0) out.push(v); else out[out.length - 1] += v; return out; }, []);
  while (b.ok.length > 120 || (b.bucketMs < 1000 && b.ok.length > 60)) {
    b.ok = pair(b.ok); b.failed = pair(b.failed); b.bucketMs *= 2;
  }
  let t0 = Infinity, t1 = 0;
  for (const j of t.jobs) { if (j.start < t0) t0 = j.start; if (j.end > t1) t1 = j.end; }
  // With every job shown, both charts share one time axis from the run's start.
  if (t.omitted === 0) { t0 = Math.min(t0, 0); t1 = Math.max(t1, b.ok.length * b.bucketMs); }
  if (t1 <= t0) t1 = t0 + 1000;
  const x = (ms) => L + ((ms - t0) / (t1 - t0)) * (W - L - R);
  const laneTop = [];
  let y = top;
  for (const h of t.hosts) { laneTop.push(y); y += h.lanes * (laneH + gap) + hostGap; }
  const height = y + 4;
  gantt.setAttribute("height", String(height));
  gantt.setAttribute("viewBox", "0 0 " + W + " " + height);
  axis(gantt, L, W - R, 12, t0, t1, height);
  const groups = t.hosts.map((h, i) => {
    const g = svgEl("g", { class: "host", "data-host": h.name });
    const lanes = [];
    for (let l = 0; l < h.lanes; l++) {
      const lane = svgEl("g", { class: "lane", "data-lane": String(l) });
      lanes.push(lane); g.append(lane);
    }
    const label = svgEl("text", { class: "host", x: 4, y: laneTop[i] + laneH - 2 }, h.name.length > 22 ? h.name.slice(0, 21) + "…" : h.name);
    label.append(svgEl("title", {}, h.name + ": " + h.lanes + " lane(s)"));
    g.append(label);
    if (i > 0) g.append(svgEl("line", { class: "sep", x1: 0, x2: W, y1: laneTop[i] - hostGap / 2, y2: laneTop[i] - hostGap / 2 }));
    gantt.append(g);
    return lanes;
  });
  for (const j of t.jobs) {
    const x0 = x(j.start), w = Math.max(1, x(j.end) - x0);
    const r = svgEl("rect", { class: "job " + statusClass(j), x: x0.toFixed(1), y: laneTop[j.host] + j.lane * (laneH + gap),
      width: w.toFixed(1), height: laneH, rx: 2, "data-line": String(j.line) });
    const st = j.kind === "running" ? "running" : j.status === null ? "lost" : (j.timedOut ? "timed out, exit " : "exit ") + j.status;
    r.append(svgEl("title", {}, "line " + j.line + ": " + j.name + "\n" + t.hosts[j.host].name + ", " +
      fmtDuration((j.end - j.start) / 1000) + ", " + st + (j.attempt > 1 ? ", attempt " + j.attempt : "") +
      (j.kind === "attempt" ? " (retried)" : "")));
    groups[j.host][j.lane].append(r);
  }
  const n = b.ok.length, H = 140, bottom = H - 18;
  let max = 1;
  for (let i = 0; i < n; i++) max = Math.max(max, b.ok[i] + b.failed[i]);
  tp.setAttribute("height", String(H));
  tp.setAttribute("viewBox", "0 0 " + W + " " + H);
  const span = t.omitted === 0 ? t1 : Math.max(n * b.bucketMs, 1000);
  const bx = (ms) => L + (ms / span) * (W - L - R);
  axis(tp, L, W - R, H - 4, 0, span, bottom);
  tp.append(svgEl("text", { x: 4, y: 14 }, max + " per " + fmtDuration(b.bucketMs / 1000)));
  tp.append(svgEl("text", { x: 4, y: bottom }, "0"));
  const g = svgEl("g", { class: "bars" });
  for (let i = 0; i < n; i++) {
    const total = b.ok[i] + b.failed[i];
    if (total === 0) continue;
    const x0 = bx(i * b.bucketMs), w = Math.max(1, bx((i + 1) * b.bucketMs) - x0 - 1);
    const hOk = (b.ok[i] / max) * (bottom - 20), hF = (b.failed[i] / max) * (bottom - 20);
    const label = fmtDuration((i * b.bucketMs) / 1000) + "–" + fmtDuration(((i + 1) * b.bucketMs) / 1000) + ": " +
      b.ok[i] + " ok, " + b.failed[i] + " failed";
    if (b.ok[i] > 0) {
      const r = svgEl("rect", { class: "bar", x: x0.toFixed(1), y: (bottom - hOk).toFixed(1), width: w.toFixed(1), height: hOk.toFixed(1) });
      r.append(svgEl("title", {}, label)); g.append(r);
    }
    if (b.failed[i] > 0) {
      const r = svgEl("rect", { class: "bar failed", x: x0.toFixed(1), y: (bottom - hOk - hF).toFixed(1), width: w.toFixed(1), height: hF.toFixed(1) });
      r.append(svgEl("title", {}, label)); g.append(r);
    }
  }
  tp.append(g);
  text("throughput-note", "Jobs settled per " + fmtDuration(b.bucketMs / 1000) + " (by the time their result was recorded).");
  document.body.dataset.timeline = "drawn";
}

async function refreshTimeline() {
  if (timelineBusy) return;
  timelineBusy = true;
  try {
    const res = await fetch("timeline", { cache: "no-store" });
    if (res.ok) {
      lastTimeline = await res.json();
      lastTimelineAt = Date.now();
      drawTimeline(withRunning(lastTimeline, finishedSeen ? null : lastStatus));
    }
  } catch (_) { /* the manager may have exited */ } finally { timelineBusy = false; }
}

async function poll() {
  try {
    const res = await fetch("status?runners=300&jobs=32", { cache: "no-store" });
    if (!res.ok) throw new Error("HTTP " + res.status);
    const s = await res.json();
    showStatus(s);
    document.body.dataset.status = s.finished ? "finished" : "running";
    if (s.finished && !finishedSeen) { finishedSeen = true; await refreshTimeline(); }
    else if (!s.finished) {
      drawTimeline(withRunning(lastTimeline, s));
      if (Date.now() - lastTimelineAt > 3000) refreshTimeline();
    }
  } catch (_) {
    if (lastStatus !== null) {
      setState(finishedSeen ? "finished; the manager has exited" : "manager unreachable (stopped or exited)", "gone");
    }
  }
  // A big fleet's snapshot is not free for the manager: ask less often.
  setTimeout(poll, finishedSeen ? 5000 : lastStatus !== null && lastStatus.jobs.running > 2000 ? 3000 : 1000);
}

if (embedded !== null) {
  showReport(embedded.report, embedded.resultsDir);
  drawTimeline(embedded.timeline);
  document.body.dataset.status = "report";
} else {
  poll();
  refreshTimeline();
}
`;
