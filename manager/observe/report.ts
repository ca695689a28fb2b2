/**
 * What a run did, read back from its results journal:
 * jobs ok, failed, timed out (`"timedOut": true`: stopped by `--timeout`)
 * and lost, attempts, wall time, per-host counts and busy
 * time, the slowest jobs, the exit status distribution, and the timeline
 * of job intervals the status page draws (lanes per host, throughput over
 * time).
 *
 * The journal is read as a stream and folded into a {@linkcode JournalDigest}
 * whose memory is bounded whatever the run's size: counters, one entry per
 * host and per exit status, the ten slowest jobs, throughput in at most
 * {@linkcode THROUGHPUT_BUCKETS} buckets (their width doubles as the run
 * grows), and only the last {@linkcode DEFAULT_TIMELINE_LIMIT} job
 * intervals for the Gantt chart. The live status server keeps one digest
 * and feeds it only the journal bytes appended since its last read.
 *
 * @module
 */

import { join } from "node:path";
import { type JournalTail, readJournal } from "../../io/journal_reader.ts";
import { JOURNAL_FILE, type JournalRecord } from "../results/results_store.ts";
import { clip } from "./run_status.ts";
import { printable } from "../../util/printable.ts";

/** Job intervals kept for the timeline unless told otherwise (the most recent ones). */
export const DEFAULT_TIMELINE_LIMIT = 5000;
/** Most throughput buckets; when a run outgrows them, their width doubles. */
export const THROUGHPUT_BUCKETS = 600;
/** Slowest jobs listed. */
export const SLOWEST_LIMIT = 10;
const NAME_LIMIT = 160;

/** One job (or failed attempt) on the timeline. */
export interface TimelineJob {
  /** 1-based line in the job list. */
  line: number;
  /** Command line or bundle name (clipped). */
  name: string;
  /** Index into {@linkcode Timeline.hosts}. */
  host: number;
  /** Lane within its host (jobs that overlap in time get different lanes). */
  lane: number;
  /** Start, ms after {@linkcode Timeline.origin}. */
  start: number;
  /** End, ms after {@linkcode Timeline.origin}. */
  end: number;
  /** Exit status; `null` when lost. */
  status: number | null;
  /** Attempt number. */
  attempt: number;
  /** `attempt` for a failed try that was run again (`--retries`). */
  kind: "job" | "attempt";
  /** Present when `--timeout` stopped it. */
  timedOut?: true;
}

/** The data the status page's timeline draws. */
export interface Timeline {
  /** Format version. */
  version: 1;
  /** Time zero of the chart (ISO-8601 UTC): the first run's start. */
  origin: string;
  /** Last end, ms after `origin`. */
  span: number;
  /** Hosts, with the lanes each needs. */
  hosts: { name: string; lanes: number }[];
  /** The job intervals (the most recent `limit`). */
  jobs: TimelineJob[];
  /** Job intervals read in all (a gang task counts once per member). */
  total: number;
  /** How many were left out (only the most recent are kept). */
  omitted: number;
  /** Jobs settled per bucket (ok and failed), by end time. */
  throughput: { bucketMs: number; ok: number[]; failed: number[] };
}

/** Per-host totals. */
export interface HostReport {
  /** Host name. */
  host: string;
  /** Jobs settled there. */
  jobs: number;
  /** Of those, exited 0. */
  ok: number;
  /** Of those, stopped by `--timeout`. */
  timedOut: number;
  /** Failed attempts run there that were tried again. */
  attempts: number;
  /** Sum of its jobs' and attempts' durations, seconds. */
  busySeconds: number;
}

/** What a journal says about its runs. */
export interface RunReport {
  /** Manager runs recorded on this results directory. */
  runs: number;
  /** The job list of the last run. */
  source: string | null;
  /** Jobs in the list of the last run. */
  listed: number | null;
  /** Settled jobs recorded. */
  jobs: number;
  /** Of those, exited 0. */
  ok: number;
  /** Exited non-zero by themselves (not counting those timed out). */
  failed: number;
  /** Stopped by `--timeout` (their status is the signal's). */
  timedOut: number;
  /** Given up as lost. */
  lost: number;
  /** Failed attempts that were tried again (`--retries`). */
  retried: number;
  /** Of those, the attempts stopped by `--timeout`. */
  retriedTimedOut: number;
  /** Most attempts any job took. */
  maxAttempt: number;
  /** First run start (or first hand-out) to last result, seconds. */
  wallSeconds: number;
  /** Sum of all job and attempt durations, seconds (a gang task's once per member). */
  busySeconds: number;
  /** First start (ISO-8601 UTC), or null for an empty journal. */
  first: string | null;
  /** Last end (ISO-8601 UTC). */
  last: string | null;
  /** Per host, most jobs first. */
  hosts: HostReport[];
  /** Exit statuses ("lost" for lost jobs) and how many jobs ended with each, most first. */
  statuses: [status: string, jobs: number][];
  /** The slowest settled jobs. */
  slowest: { line: number; name: string; host: string; seconds: number; status: number | null; timedOut?: true }[];
  /** Job and attempt records whose times cannot be read (the journal reader refuses lines that do not parse). */
  unreadable: number;
}

interface Interval {
  line: number;
  name: string;
  host: string;
  start: number;
  end: number;
  status: number | null;
  attempt: number;
  kind: "job" | "attempt";
  timedOut?: true;
}

/** Whether a job or attempt record says `--timeout` stopped it. */
function timedOutIn(record: JournalRecord): boolean {
  return (record as { timedOut?: unknown }).timedOut === true;
}

/**
 * Folds journal records into a bounded summary and timeline.
 *
 * @example
 * ```ts
 * import { JournalDigest } from "./report.ts";
 * const d = new JournalDigest();
 * d.feed({ type: "job", key: "k", line: 1, command: "true", status: 0, host: "a",
 *   start: "2026-01-01T00:00:00Z", end: "2026-01-01T00:00:02Z", attempt: 1, size: 0, sha256: "", output: null });
 * console.assert(d.report().ok === 1 && d.timeline().hosts[0].name === "a");
 * ```
 */
export class JournalDigest {
  readonly #limit: number;
  readonly #ring: Interval[] = [];
  #ringAt = 0;
  #total = 0;
  #origin = NaN;
  #lastEnd = NaN;
  #runs = 0;
  #source: string | null = null;
  #listed: number | null = null;
  #jobs = 0;
  #ok = 0;
  #failed = 0;
  #timedOut = 0;
  #lost = 0;
  #retried = 0;
  #retriedTimedOut = 0;
  #maxAttempt = 0;
  #busyMs = 0;
  #unreadable = 0;
  readonly #hosts = new Map<string, HostReport>();
  readonly #statuses = new Map<string, number>();
  readonly #slowest: Interval[] = [];
  #bucketMs = 100;
  #okBuckets: number[] = [];
  #failedBuckets: number[] = [];

  /** @param limit Job intervals kept for the timeline (the most recent). */
  constructor(limit = DEFAULT_TIMELINE_LIMIT) {
    this.#limit = Math.max(1, limit);
  }

  /** Folds in one record. */
  feed(record: JournalRecord): void {
    if (record.type === "run") {
      this.#runs++;
      this.#source = record.source;
      this.#listed = record.jobs;
      this.#noteOrigin(Date.parse(record.started));
      return;
    }
    if (record.type === "reopen") {
      this.#reopen(record);
      return;
    }
    if (record.type !== "job" && record.type !== "attempt") return;
    const start = Date.parse(record.start), end = Date.parse(record.end);
    if (!Number.isFinite(start) || !Number.isFinite(end)) {
      this.#unreadable++;
      return;
    }
    this.#noteOrigin(start);
    const iv: Interval = {
      line: record.line,
      name: clip(
        ("name" in record && typeof record.name === "string" ? record.name : record.command) ?? "",
        NAME_LIMIT,
      ),
      host: String(record.host),
      start,
      end: Math.max(start, end),
      status: record.status,
      attempt: record.attempt ?? 1,
      kind: record.type,
      ...(timedOutIn(record) ? { timedOut: true as const } : {}),
    };
    const ms = iv.end - iv.start;
    if (!(iv.end <= this.#lastEnd)) this.#lastEnd = iv.end;
    this.#maxAttempt = Math.max(this.#maxAttempt, iv.attempt);
    const attempt = record.type === "attempt";
    if (attempt) {
      this.#retried++;
      if (iv.timedOut) this.#retriedTimedOut++;
    } else {
      this.#jobs++;
      const lost = record.status === null;
      const key = lost ? "lost" : String(record.status);
      this.#statuses.set(key, (this.#statuses.get(key) ?? 0) + 1);
      if (lost) this.#lost++;
      else if (iv.timedOut) this.#timedOut++;
      else if (record.status === 0) this.#ok++;
      else this.#failed++;
      this.#countThroughput(iv.end, record.status === 0 && !iv.timedOut);
      this.#noteSlow(iv);
    }
    // A gang task names its members' hosts joined by commas: it occupies a
    // slot on each, and counts for each (as in the manager's summary).
    const members = iv.host.includes(",") ? iv.host.split(",") : [iv.host];
    for (const name of members) {
      let host = this.#hosts.get(name);
      if (host === undefined) {
        this.#hosts.set(name, host = { host: name, jobs: 0, ok: 0, timedOut: 0, attempts: 0, busySeconds: 0 });
      }
      host.busySeconds += ms / 1000;
      this.#busyMs += ms;
      if (attempt) host.attempts++;
      else {
        host.jobs++;
        if (iv.timedOut) host.timedOut++;
        else if (record.status === 0) host.ok++;
      }
      this.#total++;
      const slot = members.length === 1 ? iv : { ...iv, host: name };
      if (this.#ring.length < this.#limit) this.#ring.push(slot);
      else {
        this.#ring[this.#ringAt] = slot;
        this.#ringAt = (this.#ringAt + 1) % this.#limit;
      }
    }
  }

  /**
   * A settled job opened again (`--resume-failed`): its settlement, counted
   * when its record was read, becomes a past attempt (a failed try that was
   * run again). The reopen record repeats what it said, so nothing per key
   * is remembered.
   */
  #reopen(record: Extract<JournalRecord, { type: "reopen" }>): void {
    const lost = record.status === null;
    const status = lost ? "lost" : String(record.status);
    const count = this.#statuses.get(status);
    if (count === undefined || this.#jobs === 0) return; // not a settlement this digest counted
    if (count > 1) this.#statuses.set(status, count - 1);
    else this.#statuses.delete(status);
    this.#jobs--;
    if (lost) this.#lost--;
    else if (record.timedOut === true) this.#timedOut--;
    else if (record.status === 0) this.#ok--;
    else this.#failed--;
    this.#retried++;
    if (record.timedOut === true) this.#retriedTimedOut++;
    for (const name of String(record.host).split(",")) {
      const host = this.#hosts.get(name);
      if (host === undefined || host.jobs === 0) continue;
      host.jobs--;
      host.attempts++;
      if (record.timedOut === true) host.timedOut--;
      else if (record.status === 0) host.ok--;
    }
  }

  #noteOrigin(t: number): void {
    if (!Number.isFinite(t)) return;
    if (Number.isNaN(this.#origin)) this.#origin = t;
    else if (t < this.#origin) {
      // An earlier time than the origin (clocks, or records out of order):
      // shift the throughput buckets so index 0 stays the origin.
      const shift = Math.ceil((this.#origin - t) / this.#bucketMs);
      if (this.#okBuckets.length > 0 && shift > 0) {
        this.#okBuckets = [...new Array(shift).fill(0), ...this.#okBuckets];
        this.#failedBuckets = [...new Array(shift).fill(0), ...this.#failedBuckets];
        this.#origin -= shift * this.#bucketMs;
        this.#fitBuckets();
      } else this.#origin = t;
    }
  }

  #countThroughput(end: number, ok: boolean): void {
    let i = Math.max(0, Math.floor((end - this.#origin) / this.#bucketMs));
    while (i >= THROUGHPUT_BUCKETS) {
      this.#widen();
      i = Math.max(0, Math.floor((end - this.#origin) / this.#bucketMs));
    }
    while (this.#okBuckets.length <= i) {
      this.#okBuckets.push(0);
      this.#failedBuckets.push(0);
    }
    if (ok) this.#okBuckets[i]++;
    else this.#failedBuckets[i]++;
  }

  #fitBuckets(): void {
    while (this.#okBuckets.length > THROUGHPUT_BUCKETS) this.#widen();
  }

  /** Doubles the bucket width, merging pairs. */
  #widen(): void {
    const merge = (a: number[]) =>
      Array.from({ length: Math.ceil(a.length / 2) }, (_, i) => a[2 * i] + (a[2 * i + 1] ?? 0));
    this.#okBuckets = merge(this.#okBuckets);
    this.#failedBuckets = merge(this.#failedBuckets);
    this.#bucketMs *= 2;
  }

  #noteSlow(iv: Interval): void {
    const s = this.#slowest;
    const ms = iv.end - iv.start;
    if (s.length === SLOWEST_LIMIT && ms <= s[s.length - 1].end - s[s.length - 1].start) return;
    let at = s.findIndex((x) => x.end - x.start < ms);
    if (at === -1) at = s.length;
    s.splice(at, 0, iv);
    if (s.length > SLOWEST_LIMIT) s.pop();
  }

  /** The summary. */
  report(): RunReport {
    const origin = this.#origin, last = this.#lastEnd;
    const known = Number.isFinite(origin);
    return {
      runs: this.#runs,
      source: this.#source,
      listed: this.#listed,
      jobs: this.#jobs,
      ok: this.#ok,
      failed: this.#failed,
      timedOut: this.#timedOut,
      lost: this.#lost,
      retried: this.#retried,
      retriedTimedOut: this.#retriedTimedOut,
      maxAttempt: this.#maxAttempt,
      wallSeconds: known && Number.isFinite(last) ? (last - origin) / 1000 : 0,
      busySeconds: this.#busyMs / 1000,
      first: known ? new Date(origin).toISOString() : null,
      last: Number.isFinite(last) ? new Date(last).toISOString() : null,
      hosts: [...this.#hosts.values()].sort((a, b) => b.jobs - a.jobs || a.host.localeCompare(b.host)),
      statuses: [...this.#statuses].sort((a, b) => b[1] - a[1]),
      slowest: this.#slowest.map((iv) => ({
        line: iv.line,
        name: iv.name,
        host: iv.host,
        seconds: (iv.end - iv.start) / 1000,
        status: iv.status,
        ...(iv.timedOut ? { timedOut: true as const } : {}),
      })),
      unreadable: this.#unreadable,
    };
  }

  /** The timeline: the most recent intervals packed into lanes per host, and throughput. */
  timeline(): Timeline {
    const origin = Number.isFinite(this.#origin) ? this.#origin : Date.now();
    const intervals = [...this.#ring.slice(this.#ringAt), ...this.#ring.slice(0, this.#ringAt)];
    const packed = packLanes(intervals);
    const hostIndex = new Map<string, number>();
    const hosts: { name: string; lanes: number }[] = [];
    for (const name of [...packed.lanes.keys()].sort((a, b) => a.localeCompare(b, undefined, { numeric: true }))) {
      hostIndex.set(name, hosts.length);
      hosts.push({ name, lanes: packed.lanes.get(name)! });
    }
    return {
      version: 1,
      origin: new Date(origin).toISOString(),
      span: Number.isFinite(this.#lastEnd) ? this.#lastEnd - origin : 0,
      hosts,
      jobs: intervals.map((iv, i) => ({
        line: iv.line,
        name: iv.name,
        host: hostIndex.get(iv.host)!,
        lane: packed.lane[i],
        start: iv.start - origin,
        end: iv.end - origin,
        status: iv.status,
        attempt: iv.attempt,
        kind: iv.kind,
        ...(iv.timedOut ? { timedOut: true as const } : {}),
      })),
      total: this.#total,
      omitted: this.#total - intervals.length,
      throughput: { bucketMs: this.#bucketMs, ok: [...this.#okBuckets], failed: [...this.#failedBuckets] },
    };
  }
}

/**
 * Packs each host's intervals into lanes: an interval goes to the lowest
 * lane whose last interval ended by its start. On a runner with N workers
 * this needs at most N lanes (the manager's hand-out and receipt times
 * bracket each worker's run).
 *
 * @returns The lane of each interval (by index) and the lanes each host needs.
 */
export function packLanes(
  intervals: readonly { host: string; start: number; end: number }[],
): { lane: number[]; lanes: Map<string, number> } {
  const order = intervals.map((_, i) => i).sort((a, b) =>
    intervals[a].start - intervals[b].start || intervals[a].end - intervals[b].end
  );
  const laneEnds = new Map<string, number[]>();
  const lane = new Array<number>(intervals.length).fill(0);
  for (const i of order) {
    const iv = intervals[i];
    let ends = laneEnds.get(iv.host);
    if (ends === undefined) laneEnds.set(iv.host, ends = []);
    let l = ends.findIndex((e) => e <= iv.start);
    if (l === -1) l = ends.push(0) - 1;
    ends[l] = iv.end;
    lane[i] = l;
  }
  return { lane, lanes: new Map([...laneEnds].map(([h, e]) => [h, e.length])) };
}

/**
 * Reads journal records from `offset` to the end and feeds each to `digest`
 * (io/journal_reader.ts); a torn last line (being written) is left for the
 * next call.
 *
 * @returns The offset just past the last complete record read.
 * @throws {JournalDamagedError} (core/errors.ts) for damage before the last line.
 */
export async function feedJournal(path: string, digest: JournalDigest, offset = 0): Promise<number> {
  return (await feedJournalFrom(path, digest, { offset, line: 1 })).end;
}

/**
 * {@linkcode feedJournal} from a position a previous read returned, so that
 * line numbers (in a damage error) count from the journal's start; up to
 * `end` if given (see `JournalReadOptions.end` in io/journal_reader.ts).
 */
export function feedJournalFrom(
  path: string,
  digest: JournalDigest,
  from: { offset: number; line: number; end?: number },
): Promise<JournalTail> {
  return readJournal(path, ({ record }) => digest.feed(record as unknown as JournalRecord), from);
}

/** Reads a results directory's journal into a new digest. */
export async function digestResults(dir: string, limit = DEFAULT_TIMELINE_LIMIT): Promise<JournalDigest> {
  const digest = new JournalDigest(limit);
  await feedJournal(join(dir, JOURNAL_FILE), digest);
  return digest;
}

function seconds(s: number): string {
  if (s < 60) return `${s.toFixed(s < 10 ? 2 : 1)}s`;
  const whole = Math.round(s);
  if (whole < 3600) return `${Math.floor(whole / 60)}m${String(whole % 60).padStart(2, "0")}s`;
  return `${Math.floor(whole / 3600)}h${String(Math.floor((whole % 3600) / 60)).padStart(2, "0")}m`;
}

/** The report as text for a terminal (every name from the journal through {@linkcode printable}). */
export function formatReport(r: RunReport, dir: string): string {
  const lines: string[] = [];
  const of = r.listed === null ? "" : ` (the last run's list has ${r.listed})`;
  lines.push(`${printable(dir)}: ${r.runs} run(s) of ${printable(r.source ?? "an unknown job list")}`);
  lines.push(
    `  jobs: ${r.jobs} settled${of}: ${r.ok} ok, ${r.failed} failed, ` +
      (r.timedOut > 0 ? `${r.timedOut} timed out, ` : "") +
      `${r.lost} lost; ${r.retried} failed attempt(s) retried` +
      (r.retriedTimedOut > 0 ? ` (${r.retriedTimedOut} timed out)` : "") +
      `, at most ${r.maxAttempt} attempt(s) per job`,
  );
  const parallelism = r.wallSeconds > 0 ? r.busySeconds / r.wallSeconds : 0;
  lines.push(
    `  wall time: ${seconds(r.wallSeconds)} (${r.first ?? "?"} to ${r.last ?? "?"}); ` +
      `busy ${seconds(r.busySeconds)}, ${parallelism.toFixed(1)} jobs running on average` +
      (r.wallSeconds > 0 ? `, ${(r.jobs / r.wallSeconds).toFixed(1)} jobs/s` : ""),
  );
  if (r.hosts.length > 0) {
    lines.push("  hosts:                        jobs       ok  retried   busy");
    const shown = r.hosts.slice(0, 20);
    for (const h of shown) {
      lines.push(
        `    ${printable(h.host).padEnd(24)} ${String(h.jobs).padStart(8)} ${String(h.ok).padStart(8)} ` +
          `${String(h.attempts).padStart(8)}   ${seconds(h.busySeconds)}`,
      );
    }
    if (r.hosts.length > shown.length) lines.push(`    … ${r.hosts.length - shown.length} more host(s)`);
  }
  if (r.statuses.length > 0) {
    lines.push(`  exit status: ${r.statuses.slice(0, 12).map(([s, n]) => `${s}×${n}`).join("  ")}`);
  }
  if (r.slowest.length > 0) {
    lines.push("  slowest:");
    for (const s of r.slowest) {
      lines.push(
        `    ${seconds(s.seconds).padStart(8)}  line ${String(s.line).padEnd(6)} ${printable(s.host).padEnd(16)} ` +
          `${s.status === null ? "lost" : s.timedOut ? `timed out (exit ${s.status})` : `exit ${s.status}`}  ` +
          printable(clip(s.name, 60)),
      );
    }
  }
  if (r.unreadable > 0) lines.push(`  ${r.unreadable} journal record(s) with unreadable times`);
  return lines.join("\n") + "\n";
}
