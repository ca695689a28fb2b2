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
import { statusPageClient } from "./status_page_client.ts";

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
<p id="filter-row" hidden><input id="host-filter" type="search" placeholder="filter hosts (name contains…)" aria-label="filter hosts">
  <span class="muted">tables and timeline</span></p>
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
  <p id="hosts-note" class="muted"></p>
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
<section id="report-details" hidden>
  <h3>Exit status</h3><p id="statuses"></p>
  <h3>Slowest jobs</h3><ol id="slowest"></ol>
</section>
<script id="vico-data" type="application/json">${embedded === undefined ? "null" : embedJson(embedded)}</script>
<script>"use strict";(${String(statusPageClient)})();</script>
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
.tag { margin-left: 6px; padding: 0 5px; border-radius: 8px; background: var(--line); color: var(--muted); font-size: 11px; }
#filter-row { margin: 10px 0 0; } #host-filter { font: inherit; padding: 3px 8px; width: 280px; border: 1px solid #c9ced6; border-radius: 4px; }
rect.track { fill: #eef0f3; fill-opacity: 0.7; } rect.util { fill: var(--ok); } rect.util.failed { fill: var(--failed); } rect.util.running { fill: var(--running); }
.legend { font-weight: normal; font-size: 12px; color: var(--muted); margin-left: 12px; }
.legend i { display: inline-block; width: 10px; height: 10px; margin: 0 3px 0 8px; border-radius: 2px; }
.legend i.ok { background: var(--ok); } .legend i.failed { background: var(--failed); }
.legend i.attempt { background: var(--attempt); } .legend i.running { background: var(--running); } .legend i.lost { background: var(--lost); }
`;
