/// <reference lib="dom" />
/**
 * The status page's script, run in the browser. It is one self-contained
 * function, {@linkcode statusPageClient}: the page embeds its source text
 * (`String(statusPageClient)`) and calls it, so it is linted and
 * type-checked as code here and needs no bundler, file or server at run time
 * (the compiled binaries carry it as part of this module).
 *
 * Rules that keep the embedding sound: the function uses only browser APIs
 * and what it declares inside itself (no imports, no module-level values;
 * `import type` is erased), and nothing the TypeScript compiler would turn
 * into a helper outside the function.
 *
 * @module
 */

import type { RunReport, Timeline, TimelineJob } from "./report.ts";
import type { RunnerStatus, StatusSnapshot } from "./run_status.ts";

/** What an offline page carries in its `vico-data` element. */
export interface ClientEmbeddedRun {
  /** The results directory, for the title. */
  resultsDir: string;
  /** The summary. */
  report: RunReport;
  /** The timeline. */
  timeline: Timeline;
}

/**
 * The page's script: reads the embedded run (offline) or polls `status` and
 * `timeline` (live) and draws the counts, tables and charts. Every value from
 * the run is put in the page as text, never as markup.
 */
export function statusPageClient(): void {
  "use strict";
  type DrawJob = Omit<TimelineJob, "kind"> & { kind: TimelineJob["kind"] | "running" };
  type DrawTimeline = Omit<Timeline, "jobs"> & { jobs: DrawJob[] };
  type Attrs = Record<string, string | number>;

  const SVG = "http://www.w3.org/2000/svg";
  const $ = (id: string): HTMLElement => document.getElementById(id)!;
  const embedded = JSON.parse($("vico-data").textContent || "null") as ClientEmbeddedRun | null;
  let lastStatus: StatusSnapshot | null = null, lastTimeline: Timeline | null = null;
  let finishedSeen = false, timelineBusy = false, lastTimelineAt = 0;
  /** Beyond so many hosts the tables list only the busiest and slowest few (and what the filter matches). */
  const SUMMARY_HOSTS = 12;
  /** Busiest hosts listed in a summarized table (the rest of `SUMMARY_HOSTS` are the slowest). */
  const BUSIEST = 6;
  /** Most rows a filtered table lists. */
  const FILTER_ROWS = 200;
  /** Beyond so many hosts, or `BAND_LANES` lanes, the timeline draws utilization bands. */
  const BAND_HOSTS = 40;
  /** See `BAND_HOSTS`. */
  const BAND_LANES = 120;
  /** Most bands (rows) on an aggregated timeline; hosts are grouped so that they fit. */
  const BAND_ROWS = 60;
  /** Time columns of a band. */
  const BAND_COLUMNS = 240;
  /** What is drawn now, to draw again when the host filter changes. */
  let shownTimeline: DrawTimeline | null = null, shownReport: RunReport | null = null;
  const filterBox = $("host-filter") as HTMLInputElement;
  const hostFilter = () => filterBox.value.trim().toLowerCase();
  filterBox.addEventListener("input", () => {
    if (shownReport !== null) showHosts(shownReport);
    if (lastStatus !== null && embedded === null) showRunners(lastStatus);
    drawTimeline(shownTimeline);
  });

  /**
   * The rows a host table lists: all of a small fleet; of a big one the
   * `BUSIEST` busiest and the slowest to fill `SUMMARY_HOSTS`, each with why;
   * with a filter, the hosts it matches.
   */
  function pick<T extends { host: string }>(
    list: T[],
    busiest: (a: T, b: T) => number,
    slowest: (a: T, b: T) => number,
  ): { rows: { item: T; why: string }[]; note: string } {
    const f = hostFilter();
    if (f !== "") {
      const hits = list.filter((h) => h.host.toLowerCase().includes(f));
      return {
        rows: hits.slice(0, FILTER_ROWS).map((item) => ({ item, why: "" })),
        note: hits.length + " of " + list.length + " hosts match" +
          (hits.length > FILTER_ROWS ? " (the first " + FILTER_ROWS + " listed)." : "."),
      };
    }
    if (list.length <= SUMMARY_HOSTS) return { rows: list.map((item) => ({ item, why: "" })), note: "" };
    const rows = list.slice().sort(busiest).slice(0, BUSIEST).map((item) => ({ item, why: "busiest" }));
    const seen = new Set(rows.map((r) => r.item));
    for (const item of list.slice().sort(slowest)) {
      if (rows.length >= SUMMARY_HOSTS) break;
      if (!seen.has(item)) rows.push({ item, why: "slowest" });
    }
    return {
      rows,
      note: "The " + BUSIEST + " busiest and " + (rows.length - BUSIEST) + " slowest of " + list.length +
        " hosts; filter to find any other.",
    };
  }
  function hostCell(host: string, why: string): HTMLElement {
    const td = el("td", {}, host);
    if (why !== "") td.append(el("span", { class: "tag" }, why));
    return td;
  }

  function text(id: string, value: string | number): void {
    $(id).textContent = String(value);
  }
  function fmtDuration(s: number | null | undefined): string {
    if (s === null || s === undefined || !isFinite(s)) return "–";
    if (s < 10) return s.toFixed(1) + "s";
    s = Math.round(s);
    if (s < 60) return s + "s";
    if (s < 3600) return Math.floor(s / 60) + "m" + String(s % 60).padStart(2, "0") + "s";
    return Math.floor(s / 3600) + "h" + String(Math.floor((s % 3600) / 60)).padStart(2, "0") + "m";
  }
  function fmtRate(r: number): string {
    return r >= 10 ? r.toFixed(0) : r.toFixed(1);
  }
  function el(tag: string, attrs?: Attrs, content?: string): HTMLElement {
    const e = document.createElement(tag);
    for (const k in attrs || {}) e.setAttribute(k, String(attrs![k]));
    if (content !== undefined) e.textContent = content;
    return e;
  }
  function svgEl(tag: string, attrs?: Attrs, content?: string): SVGElement {
    const e = document.createElementNS(SVG, tag);
    for (const k in attrs || {}) e.setAttribute(k, String(attrs![k]));
    if (content !== undefined) e.textContent = content;
    return e;
  }
  function setState(label: string, cls?: string): void {
    const s = $("state");
    s.textContent = label;
    s.className = "badge " + (cls || "");
  }

  function showCounts(
    j: { total: number; pending: number; running: number; done: number; failed: number; lost?: number },
    extra?: StatusSnapshot,
  ): void {
    text("n-total", j.total);
    text("n-pending", j.pending);
    text("n-running", j.running);
    text("n-done", j.done);
    text("n-failed", j.failed - (j.lost || 0));
    text("n-lost", j.lost || 0);
    const pct = (n: number) => (j.total > 0 ? (100 * n) / j.total : 0) + "%";
    $("bar-done").style.width = pct(j.done);
    $("bar-failed").style.width = pct(j.failed);
    $("bar-running").style.width = pct(j.running);
    if (extra) {
      text("n-runners", extra.runners);
      text("rate", fmtRate(extra.rate));
      text("eta", extra.finished ? "done" : fmtDuration(extra.etaSeconds));
      text("elapsed", fmtDuration(extra.elapsedSeconds));
    }
  }

  function runnerRow(r: RunnerStatus, now: number, why: string): HTMLElement {
    const tr = el("tr", { class: "runner", "data-host": r.host });
    tr.append(
      hostCell(r.host, why),
      el("td", {}, r.protocol),
      el("td", {}, r.peer),
      el("td", { class: "num" }, String(r.workers)),
      el("td", { class: "num" }, String(r.settled)),
      el("td", {}, fmtDuration((now - Date.parse(r.joined)) / 1000) + " ago"),
    );
    const jobs = el("td", { class: "jobs" });
    for (const job of r.jobs) {
      const since = job.since === null ? "" : " (" + fmtDuration((now - Date.parse(job.since)) / 1000) + ")";
      jobs.append(
        el("span", { class: "job", "data-line": String(job.line), title: job.name }, "line " + job.line + since),
      );
    }
    if (r.running > r.jobs.length) jobs.append(el("span", {}, "… " + (r.running - r.jobs.length) + " more"));
    tr.append(jobs);
    return tr;
  }

  function showStatus(s: StatusSnapshot): void {
    lastStatus = s;
    showCounts(s.jobs, s);
    text("source", s.source + " → " + s.resultsDir);
    const failed = s.jobs.failed > 0;
    if (s.finished) {
      setState(failed ? "finished, " + s.jobs.failed + " failed" : "finished", failed ? "failed" : "done");
    } else setState(s.stopping ? "stopping" : "running", "running");
    showRunners(s);
  }

  // Busiest: most jobs running, then most settled; slowest: fewest settled.
  function showRunners(s: StatusSnapshot): void {
    const body = ($("runners") as HTMLTableElement).tBodies[0];
    body.textContent = "";
    const now = Date.parse(s.now);
    const picked = pick(
      s.runnerList,
      (a, b) => b.running - a.running || b.settled - a.settled,
      (a, b) => a.settled - b.settled || b.running - a.running,
    );
    for (const r of picked.rows) body.append(runnerRow(r.item, now, r.why === "slowest" ? "fewest settled" : r.why));
    $("filter-row").hidden = s.runnerList.length <= SUMMARY_HOSTS;
    const listed = s.runners > s.runnerList.length
      ? " (" + s.runnerList.length + " of " + s.runners + " runners asked for)"
      : "";
    text("runners-note", s.runners === 0 ? "No runner connected." : picked.note + (picked.note !== "" ? listed : ""));
  }

  function showReport(r: RunReport, dir: string): void {
    $("report-section").hidden = false;
    $("report-details").hidden = false;
    $("runners-section").hidden = true;
    const failed = r.failed + (r.timedOut || 0) + r.lost;
    setState(failed > 0 ? "report, " + failed + " failed" : "report", failed > 0 ? "failed" : "done");
    text("source", (r.source || "?") + " → " + dir);
    showCounts({ total: r.jobs, pending: 0, running: 0, done: r.ok, failed, lost: r.lost });
    text("n-runners", r.hosts.length);
    text("rate", r.wallSeconds > 0 ? fmtRate(r.jobs / r.wallSeconds) : "–");
    text("eta", "done");
    text("elapsed", fmtDuration(r.wallSeconds));
    $("rate").nextElementSibling!.textContent = "jobs/s (overall)";
    $("n-runners").nextElementSibling!.textContent = "hosts";
    text(
      "report-line",
      r.jobs + " job(s) settled in " + r.runs + " run(s): " + r.ok + " ok, " + r.failed + " failed, " +
        (r.timedOut ? r.timedOut + " timed out, " : "") + r.lost + " lost; " + r.retried + " retried attempt(s). " +
        "Wall time " + fmtDuration(r.wallSeconds) + ", busy " + fmtDuration(r.busySeconds) + ".",
    );
    showHosts(r);
    text(
      "statuses",
      r.statuses.map((p) => (p[0] === "lost" ? "lost" : "exit " + p[0]) + ": " + p[1]).join(", ") || "–",
    );
    for (const s of r.slowest) {
      $("slowest").append(el(
        "li",
        {},
        fmtDuration(s.seconds) + " — line " + s.line + " on " + s.host + " (" +
          (s.status === null ? "lost" : (s.timedOut ? "timed out, exit " : "exit ") + s.status) + "): " + s.name,
      ));
    }
  }

  // Busiest: most jobs; slowest: longest busy time per job.
  function showHosts(r: RunReport): void {
    shownReport = r;
    const body = ($("hosts") as HTMLTableElement).tBodies[0];
    body.textContent = "";
    const perJob = (h: { jobs: number; busySeconds: number }) => h.busySeconds / Math.max(1, h.jobs);
    const picked = pick(r.hosts, (a, b) => b.jobs - a.jobs, (a, b) => perJob(b) - perJob(a));
    $("filter-row").hidden = r.hosts.length <= SUMMARY_HOSTS;
    text("hosts-note", picked.note);
    for (const { item: h, why } of picked.rows) {
      const tr = el("tr", { class: "host", "data-host": h.host });
      tr.append(
        hostCell(h.host, why),
        el("td", { class: "num" }, String(h.jobs)),
        el("td", { class: "num" }, String(h.ok)),
        el("td", { class: "num" }, String(h.attempts)),
        el("td", { class: "num" }, fmtDuration(h.busySeconds)),
      );
      body.append(tr);
    }
  }

  function niceStep(span: number, target: number): number {
    const raw = span / Math.max(1, target);
    const steps = [0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 43200, 86400];
    for (const s of steps) if (s * 1000 >= raw) return s * 1000;
    return Math.ceil(raw / 86400000) * 86400000;
  }
  function axis(svg: SVGElement, x0: number, x1: number, y: number, t0: number, t1: number, height: number): void {
    const step = niceStep(t1 - t0, 8);
    const scale = (t: number) => x0 + ((t - t0) / Math.max(1, t1 - t0)) * (x1 - x0);
    for (let t = Math.ceil(t0 / step) * step; t <= t1; t += step) {
      const x = scale(t);
      svg.append(svgEl("line", { class: "grid", x1: x, x2: x, y1: 0, y2: height }));
      if (x < x1 - 30) svg.append(svgEl("text", { x: x + 2, y: y }, fmtDuration(t / 1000)));
    }
  }
  function statusClass(j: DrawJob): string {
    if (j.kind === "attempt" || j.kind === "running") return j.kind;
    if (j.status === null) return "lost";
    return j.status === 0 ? "ok" : "failed";
  }

  // The jobs running now (from the status) added to the recorded ones; each
  // host's jobs are packed into lanes again, all together in order of start,
  // so a long job still running keeps its lane.
  function withRunning(t: Timeline | null, s: StatusSnapshot | null): DrawTimeline | null {
    if (s === null || s.finished) return t;
    const base: DrawTimeline = t || {
      version: 1,
      origin: s.started,
      span: 0,
      hosts: [],
      jobs: [],
      total: 0,
      omitted: 0,
      throughput: { bucketMs: 1000, ok: [], failed: [] },
    };
    const origin = Date.parse(base.origin), now = Date.parse(s.now) - origin;
    const hosts = base.hosts.map((h) => ({ name: h.name, lanes: h.lanes }));
    const index = new Map(hosts.map((h, i) => [h.name, i]));
    const jobs: DrawJob[] = base.jobs.map((j) => Object.assign({}, j));
    let running = 0;
    for (const r of s.runnerList) {
      if (!index.has(r.host)) {
        index.set(r.host, hosts.length);
        hosts.push({ name: r.host, lanes: 0 });
      }
      for (const j of r.jobs) {
        const start = j.since === null ? 0 : Math.max(0, Date.parse(j.since) - origin);
        jobs.push({
          line: j.line,
          name: j.name,
          host: index.get(r.host)!,
          lane: 0,
          start,
          end: Math.max(now, start),
          status: null,
          attempt: 1,
          kind: "running",
        });
        running++;
      }
    }
    if (running === 0) return Object.assign({}, base, { hosts, jobs });
    const byHost: DrawJob[][] = hosts.map(() => []);
    for (const j of jobs) byHost[j.host].push(j);
    byHost.forEach((list, h) => {
      list.sort((a, b) => a.start - b.start || a.end - b.end);
      const ends: number[] = [];
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

  function drawTimeline(t: DrawTimeline | null): void {
    const gantt = $("gantt") as unknown as SVGSVGElement, tp = $("throughput") as unknown as SVGSVGElement;
    gantt.textContent = "";
    tp.textContent = "";
    shownTimeline = t;
    if (t === null || t.jobs.length === 0) {
      gantt.setAttribute("height", "0");
      tp.setAttribute("height", "0");
      return;
    }
    const running = t.jobs.filter((j) => j.kind === "running").length;
    const v = filterHosts(t);
    const lanes = v.hosts.reduce((n, h) => n + h.lanes, 0);
    const banded = v.hosts.length > BAND_HOSTS || lanes > BAND_LANES;
    text(
      "timeline-note",
      (t.omitted > 0
        ? "The last " + (t.jobs.length - running) + " of " + t.total + " jobs and attempts"
        : t.total + " job(s) and attempt(s)") +
        (running > 0 ? " and " + running + " running" : "") +
        (banded ? " by group of hosts, " : " by host and lane (a lane is one job at a time on that host), ") +
        "from hand-out to result, since " + new Date(t.origin).toLocaleString() + ".",
    );
    const W = Math.max(640, gantt.parentElement!.clientWidth - 2),
      L = 150,
      R = 12,
      laneH = 12,
      gap = 2,
      hostGap = 8,
      top = 18;
    // Throughput: jobs settled per bucket over the whole run, merged to at most 120 bars.
    const b = { bucketMs: t.throughput.bucketMs, ok: t.throughput.ok.slice(), failed: t.throughput.failed.slice() };
    const pair = (a: number[]) =>
      a.reduce((out: number[], v, i) => {
        if (i % 2 === 0) out.push(v);
        else out[out.length - 1] += v;
        return out;
      }, []);
    while (b.ok.length > 120 || (b.bucketMs < 1000 && b.ok.length > 60)) {
      b.ok = pair(b.ok);
      b.failed = pair(b.failed);
      b.bucketMs *= 2;
    }
    let t0 = Infinity, t1 = 0;
    for (const j of t.jobs) {
      if (j.start < t0) t0 = j.start;
      if (j.end > t1) t1 = j.end;
    }
    // With every job shown, both charts share one time axis from the run's start.
    if (t.omitted === 0) {
      t0 = Math.min(t0, 0);
      t1 = Math.max(t1, b.ok.length * b.bucketMs);
    }
    if (t1 <= t0) t1 = t0 + 1000;
    const x = (ms: number) => L + ((ms - t0) / (t1 - t0)) * (W - L - R);
    let note = "";
    if (v.hosts.length < t.hosts.length) {
      note = " Showing the " + v.hosts.length + " of " + t.hosts.length + " hosts the filter matches.";
    }
    if (banded) {
      note += " " + drawBands(gantt, v, x, W, L, R, top);
    } else {
      const laneTop: number[] = [];
      let y = top;
      for (const h of v.hosts) {
        laneTop.push(y);
        y += h.lanes * (laneH + gap) + hostGap;
      }
      const height = y + 4;
      gantt.setAttribute("height", String(height));
      gantt.setAttribute("viewBox", "0 0 " + W + " " + height);
      axis(gantt, L, W - R, 12, t0, t1, height);
      const groups = v.hosts.map((h, i) => {
        const g = svgEl("g", { class: "host", "data-host": h.name });
        const lanes: SVGElement[] = [];
        for (let l = 0; l < h.lanes; l++) {
          const lane = svgEl("g", { class: "lane", "data-lane": String(l) });
          lanes.push(lane);
          g.append(lane);
        }
        const label = svgEl(
          "text",
          { class: "host", x: 4, y: laneTop[i] + laneH - 2 },
          h.name.length > 22 ? h.name.slice(0, 21) + "…" : h.name,
        );
        label.append(svgEl("title", {}, h.name + ": " + h.lanes + " lane(s)"));
        g.append(label);
        if (i > 0) {
          g.append(
            svgEl("line", { class: "sep", x1: 0, x2: W, y1: laneTop[i] - hostGap / 2, y2: laneTop[i] - hostGap / 2 }),
          );
        }
        gantt.append(g);
        return lanes;
      });
      for (const j of v.jobs) {
        const x0 = x(j.start), w = Math.max(1, x(j.end) - x0);
        const r = svgEl("rect", {
          class: "job " + statusClass(j),
          x: x0.toFixed(1),
          y: laneTop[j.host] + j.lane * (laneH + gap),
          width: w.toFixed(1),
          height: laneH,
          rx: 2,
          "data-line": String(j.line),
        });
        const st = j.kind === "running"
          ? "running"
          : j.status === null
          ? "lost"
          : (j.timedOut ? "timed out, exit " : "exit ") + j.status;
        r.append(svgEl(
          "title",
          {},
          "line " + j.line + ": " + j.name + "\n" + v.hosts[j.host].name + ", " +
            fmtDuration((j.end - j.start) / 1000) + ", " + st + (j.attempt > 1 ? ", attempt " + j.attempt : "") +
            (j.kind === "attempt" ? " (retried)" : ""),
        ));
        groups[j.host][j.lane].append(r);
      }
    }
    $("timeline-note").textContent += note;
    drawThroughput(tp, b, t.omitted === 0 ? t1 : Math.max(b.ok.length * b.bucketMs, 1000), W, L, R);
    document.body.dataset.timeline = "drawn";
  }

  /** The timeline of the hosts the filter matches (all without a filter). */
  function filterHosts(t: DrawTimeline): DrawTimeline {
    const f = hostFilter();
    if (f === "") return t;
    const index = new Map<number, number>();
    const hosts = t.hosts.filter((h, i) => {
      if (!h.name.toLowerCase().includes(f)) return false;
      index.set(i, index.size);
      return true;
    });
    const jobs = t.jobs.filter((j) => index.has(j.host)).map((j) => Object.assign({}, j, { host: index.get(j.host)! }));
    return Object.assign({}, t, { hosts, jobs });
  }

  /**
   * A big fleet's timeline: hosts (in order) grouped into at most `BAND_ROWS`
   * bands, each shaded over time by the share of its hosts' slots (lanes)
   * busy, with the share of that work that failed in red along its bottom.
   * Adjacent columns of the same shade are drawn as one rectangle, so the
   * chart's size depends on the bands and columns, not on the jobs.
   *
   * @returns A sentence for the note under the title.
   */
  function drawBands(
    gantt: SVGSVGElement,
    t: DrawTimeline,
    x: (ms: number) => number,
    W: number,
    L: number,
    R: number,
    top: number,
  ): string {
    const per = Math.ceil(t.hosts.length / BAND_ROWS), rows = Math.ceil(t.hosts.length / per);
    const bandH = 12, gap = 3, left = L, right = W - R, cols = BAND_COLUMNS;
    // The columns span the drawn axis: x maps ms to px linearly, invert it.
    const a = x(0), b1 = x(1000), pxPerMs = (b1 - a) / 1000;
    const tAt = (px: number) => (px - a) / pxPerMs;
    const c0 = tAt(left), colMs = (tAt(right) - c0) / cols;
    const busy = new Float64Array(rows * cols), failed = new Float64Array(rows * cols);
    const running = new Float64Array(rows * cols);
    const slots = new Array<number>(rows).fill(0), jobs = new Array<number>(rows).fill(0);
    t.hosts.forEach((h, i) => slots[Math.floor(i / per)] += Math.max(1, h.lanes));
    for (const j of t.jobs) {
      const row = Math.floor(j.host / per);
      jobs[row]++;
      const bad = j.kind !== "running" && j.status !== 0;
      const first = Math.max(0, Math.floor((j.start - c0) / colMs)),
        last = Math.min(cols - 1, Math.floor((j.end - c0) / colMs));
      for (let c = first; c <= last; c++) {
        const cs = c0 + c * colMs, overlap = Math.min(j.end, cs + colMs) - Math.max(j.start, cs);
        if (overlap <= 0) continue;
        busy[row * cols + c] += overlap;
        if (bad) failed[row * cols + c] += overlap;
        if (j.kind === "running") running[row * cols + c] += overlap;
      }
    }
    const height = top + rows * (bandH + gap) + 4;
    gantt.setAttribute("height", String(height));
    gantt.setAttribute("viewBox", "0 0 " + W + " " + height);
    axis(gantt, left, right, 12, c0, c0 + cols * colMs, height);
    const colPx = (right - left) / cols;
    for (let r = 0; r < rows; r++) {
      const y = top + r * (bandH + gap), firstHost = t.hosts[r * per].name;
      const lastHost = t.hosts[Math.min(t.hosts.length, (r + 1) * per) - 1].name;
      const n = Math.min(t.hosts.length, (r + 1) * per) - r * per;
      let sum = 0;
      for (let c = 0; c < cols; c++) sum += busy[r * cols + c];
      const g = svgEl("g", { class: "band", "data-first": firstHost, "data-last": lastHost });
      let common = 0;
      while (common < firstHost.length && firstHost[common] === lastHost[common]) common++;
      const name = n === 1 ? firstHost : firstHost + " … " + lastHost;
      // "node-0017–0033": the last name without the prefix both share.
      const short = n === 1 ? firstHost : firstHost + "–" + lastHost.slice(common);
      const label = svgEl(
        "text",
        { class: "host", x: 4, y: y + bandH - 2 },
        short.length > 24 ? short.slice(0, 23) + "…" : short,
      );
      g.append(label);
      g.append(svgEl("rect", { class: "track", x: left, y, width: right - left, height: bandH }));
      // Shades in tenths; a run of columns of one shade is one rectangle.
      const shade = (c: number) => Math.min(10, Math.ceil((10 * busy[r * cols + c]) / (slots[r] * colMs)));
      const share = (of: Float64Array) => (c: number) =>
        busy[r * cols + c] > 0 ? Math.ceil((10 * of[r * cols + c]) / busy[r * cols + c]) : 0;
      for (
        const [value, cls, h, dy] of [
          [shade, "util", bandH, 0],
          [share(failed), "util failed", 3, bandH - 3],
          [share(running), "util running", 3, 0],
        ] as const
      ) {
        for (let c = 0; c < cols;) {
          const v = value(c);
          let e = c + 1;
          while (e < cols && value(e) === v) e++;
          if (v > 0) {
            g.append(svgEl("rect", {
              class: cls,
              x: (left + c * colPx).toFixed(1),
              y: y + dy,
              width: ((e - c) * colPx).toFixed(1),
              height: h,
              "fill-opacity": (cls === "util" ? 0.1 + 0.09 * v : 0.2 + 0.08 * v).toFixed(2),
            }));
          }
          c = e;
        }
      }
      const mean = slots[r] > 0 ? (100 * sum) / (slots[r] * cols * colMs) : 0;
      g.append(svgEl(
        "title",
        {},
        name + ": " + n + " host(s), " + slots[r] + " slot(s), " + jobs[r] + " job(s) shown, " + mean.toFixed(0) +
          "% of the slots busy over the chart",
      ));
      gantt.append(g);
    }
    return t.hosts.length + " hosts drawn as " + rows + " bands of up to " + per +
      ": the darker, the more of their slots are busy; red along the bottom, the share that failed; " +
      "blue along the top, the share running now. " +
      "Filter the hosts to see their lanes.";
  }

  function drawThroughput(
    tp: SVGSVGElement,
    b: { bucketMs: number; ok: number[]; failed: number[] },
    span: number,
    W: number,
    L: number,
    R: number,
  ): void {
    const n = b.ok.length, H = 140, bottom = H - 18;
    let max = 1;
    for (let i = 0; i < n; i++) max = Math.max(max, b.ok[i] + b.failed[i]);
    tp.setAttribute("height", String(H));
    tp.setAttribute("viewBox", "0 0 " + W + " " + H);
    const bx = (ms: number) => L + (ms / span) * (W - L - R);
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
        const r = svgEl("rect", {
          class: "bar",
          x: x0.toFixed(1),
          y: (bottom - hOk).toFixed(1),
          width: w.toFixed(1),
          height: hOk.toFixed(1),
        });
        r.append(svgEl("title", {}, label));
        g.append(r);
      }
      if (b.failed[i] > 0) {
        const r = svgEl("rect", {
          class: "bar failed",
          x: x0.toFixed(1),
          y: (bottom - hOk - hF).toFixed(1),
          width: w.toFixed(1),
          height: hF.toFixed(1),
        });
        r.append(svgEl("title", {}, label));
        g.append(r);
      }
    }
    tp.append(g);
    text(
      "throughput-note",
      "Jobs settled per " + fmtDuration(b.bucketMs / 1000) + " (by the time their result was recorded).",
    );
  }

  async function refreshTimeline(): Promise<void> {
    if (timelineBusy) return;
    timelineBusy = true;
    try {
      const res = await fetch("timeline", { cache: "no-store" });
      if (res.ok) {
        lastTimeline = await res.json() as Timeline;
        lastTimelineAt = Date.now();
        drawTimeline(withRunning(lastTimeline, finishedSeen ? null : lastStatus));
      }
    } catch (_) {
      /* the manager may have exited */
    } finally {
      timelineBusy = false;
    }
  }

  async function poll(): Promise<void> {
    try {
      const res = await fetch("status?runners=300&jobs=32", { cache: "no-store" });
      if (!res.ok) throw new Error("HTTP " + res.status);
      const s = await res.json() as StatusSnapshot;
      showStatus(s);
      document.body.dataset.status = s.finished ? "finished" : "running";
      if (s.finished && !finishedSeen) {
        finishedSeen = true;
        await refreshTimeline();
      } else if (!s.finished) {
        drawTimeline(withRunning(lastTimeline, s));
        if (Date.now() - lastTimelineAt > 3000) refreshTimeline();
      }
    } catch (_) {
      if (lastStatus !== null) {
        setState(finishedSeen ? "finished; the manager has exited" : "manager unreachable (stopped or exited)", "gone");
      }
    }
    // A big fleet's snapshot is not free for the manager: ask less often.
    const last = lastStatus as StatusSnapshot | null;
    setTimeout(poll, finishedSeen ? 5000 : last !== null && last.jobs.running > 2000 ? 3000 : 1000);
  }

  if (embedded !== null) {
    showReport(embedded.report, embedded.resultsDir);
    drawTimeline(embedded.timeline);
    document.body.dataset.status = "report";
  } else {
    poll();
    refreshTimeline();
  }
}
