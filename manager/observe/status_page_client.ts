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

  function runnerRow(r: RunnerStatus, now: number): HTMLElement {
    const tr = el("tr", { class: "runner", "data-host": r.host });
    tr.append(
      el("td", {}, r.host),
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
    const body = ($("runners") as HTMLTableElement).tBodies[0];
    body.textContent = "";
    const now = Date.parse(s.now);
    for (const r of s.runnerList.slice(0, 300)) body.append(runnerRow(r, now));
    const shown = Math.min(300, s.runnerList.length);
    text(
      "runners-note",
      s.runners === 0
        ? "No runner connected."
        : s.runners > shown
        ? shown + " of " + s.runners + " runners shown."
        : "",
    );
  }

  function showReport(r: RunReport, dir: string): void {
    $("report-section").hidden = false;
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
    const body = ($("hosts") as HTMLTableElement).tBodies[0];
    for (const h of r.hosts) {
      const tr = el("tr", { class: "host", "data-host": h.host });
      tr.append(
        el("td", {}, h.host),
        el("td", { class: "num" }, String(h.jobs)),
        el("td", { class: "num" }, String(h.ok)),
        el("td", { class: "num" }, String(h.attempts)),
        el("td", { class: "num" }, fmtDuration(h.busySeconds)),
      );
      body.append(tr);
    }
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
    if (t === null || t.jobs.length === 0) {
      gantt.setAttribute("height", "0");
      tp.setAttribute("height", "0");
      return;
    }
    const running = t.jobs.filter((j) => j.kind === "running").length;
    text(
      "timeline-note",
      (t.omitted > 0
        ? "The last " + (t.jobs.length - running) + " of " + t.total + " jobs and attempts"
        : t.total + " job(s) and attempt(s)") +
        (running > 0 ? " and " + running + " running" : "") +
        " by host and lane (a lane is one job at a time on that host), " +
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
    const laneTop: number[] = [];
    let y = top;
    for (const h of t.hosts) {
      laneTop.push(y);
      y += h.lanes * (laneH + gap) + hostGap;
    }
    const height = y + 4;
    gantt.setAttribute("height", String(height));
    gantt.setAttribute("viewBox", "0 0 " + W + " " + height);
    axis(gantt, L, W - R, 12, t0, t1, height);
    const groups = t.hosts.map((h, i) => {
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
    for (const j of t.jobs) {
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
        "line " + j.line + ": " + j.name + "\n" + t.hosts[j.host].name + ", " +
          fmtDuration((j.end - j.start) / 1000) + ", " + st + (j.attempt > 1 ? ", attempt " + j.attempt : "") +
          (j.kind === "attempt" ? " (retried)" : ""),
      ));
      groups[j.host][j.lane].append(r);
    }
    drawThroughput(tp, b, t.omitted === 0 ? t1 : Math.max(b.ok.length * b.bucketMs, 1000), W, L, R);
    document.body.dataset.timeline = "drawn";
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
