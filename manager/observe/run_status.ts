/**
 * What a run is doing right now, for the progress display and the status
 * server: jobs by state, the recent rate and an ETA, the connected runners
 * and the jobs each holds, and a histogram of job durations.
 *
 * {@linkcode RunStatus} is fed the scheduler's events (a job handed out,
 * settled, lost; a runner joined) and reads the queue and the scheduler's
 * links through a small {@linkcode RunStatusSource}, so it is tested
 * without sockets. Its memory is bounded by the jobs running at once, not
 * by the size of the run.
 *
 * @module
 */

/** A connected runner, as {@linkcode RunStatus} sees it (a subset of the scheduler's `RunnerLink`). */
export interface StatusLink {
  /** The runner's announced host name (or address). */
  readonly host: string;
  /** Its address. */
  readonly peer: string;
  /** Its stable id (vico runners), if any. */
  readonly runnerId?: string;
}

/** Where {@linkcode RunStatus} reads the live state of a run. */
export interface RunStatusSource {
  /** Jobs waiting to be handed out. */
  readonly pending: number;
  /** Jobs handed out and not settled (including those waiting for a vanished runner). */
  readonly running: number;
  /** Of the running jobs, those waiting for a vanished runner to come back. */
  readonly leased: number;
  /** Whether the manager stopped handing out jobs. */
  readonly stopping: boolean;
  /** The connected runners. */
  links(): Iterable<StatusLink>;
  /** The jobs a runner holds. */
  jobsOf(link: StatusLink): ReadonlySet<number>;
  /** `"binary"` for a binary node, `"text"` for a text runner. */
  protocolOf(link: StatusLink): "text" | "binary";
}

/** Options for {@linkcode RunStatus}. */
export interface RunStatusOptions {
  /** Jobs in the list. */
  total: number;
  /** The job list (a path, or `-`). */
  source: string;
  /** The results directory. */
  resultsDir: string;
  /** 1-based line of each job in its list. */
  lines: ArrayLike<number>;
  /** A job's display name (its command line or bundle name). */
  nameOf: (job: number) => string;
  /** Jobs settled by earlier runs on the results directory. @default {0} */
  skipped?: number;
  /** Of those, the ones that failed or were lost. @default {0} */
  failedEarlier?: number;
  /** The clock, in ms since the epoch. @default {Date.now} */
  now?: () => number;
}

/** Job counts by state. */
export interface JobCounts {
  /** Jobs in the list. */
  total: number;
  /** Waiting to be handed out. */
  pending: number;
  /** Handed out, not settled (including `leased`). */
  running: number;
  /** Of the running jobs, those waiting for a vanished runner to come back. */
  leased: number;
  /** Settled with status 0 (this run and earlier ones). */
  done: number;
  /** Settled with a non-zero status (this run; plus failed or lost in earlier runs). */
  failed: number;
  /** Given up as lost in this run (their runners kept vanishing). */
  lost: number;
  /** Settled by earlier runs on the same results directory (included in done/failed). */
  skipped: number;
}

/** The cheap part of a snapshot, for a progress line redrawn often. */
export interface StatusCounts {
  /** Jobs by state. */
  jobs: JobCounts;
  /** Connected runners. */
  runners: number;
  /** Jobs settled per second over the last {@linkcode RATE_WINDOW_MS}. */
  rate: number;
  /** Seconds until every job is settled at that rate; `null` when unknown. */
  etaSeconds: number | null;
  /** Seconds since the run started. */
  elapsedSeconds: number;
  /** Whether every job is settled (or the run ended). */
  finished: boolean;
}

/** A job a runner holds right now. */
export interface RunningJob {
  /** 1-based line in the job list. */
  line: number;
  /** Command line or bundle name (clipped to {@linkcode NAME_LIMIT} characters). */
  name: string;
  /** When it was handed out (ISO-8601 UTC); `null` when handed out by an earlier run. */
  since: string | null;
}

/** One connected runner. */
export interface RunnerStatus {
  /** Announced host name. */
  host: string;
  /** Its address. */
  peer: string;
  /** Stable id (vico runners). */
  id?: string;
  /** Text runner or binary node. */
  protocol: "text" | "binary";
  /** When it joined (ISO-8601 UTC). */
  joined: string;
  /**
   * The most jobs it held at once so far: its worker count once it has been
   * busy (the text protocol does not announce workers).
   */
  workers: number;
  /** Jobs it settled on this connection. */
  settled: number;
  /** Jobs it holds now (at most {@linkcode JOBS_PER_RUNNER_LIMIT}; `running` says how many in all). */
  jobs: RunningJob[];
  /** How many jobs it holds now. */
  running: number;
}

/** A Prometheus-style cumulative histogram. */
export interface DurationHistogram {
  /**
   * Upper bounds in seconds and the count of durations at or below each
   * (cumulative). The `+Inf` bucket is `count`.
   */
  buckets: [le: number, count: number][];
  /** Sum of all durations, seconds. */
  sum: number;
  /** Number of durations. */
  count: number;
}

/** Everything `GET /status` returns. */
export interface StatusSnapshot extends StatusCounts {
  /** Format version of this object. */
  version: 1;
  /** When the snapshot was taken (ISO-8601 UTC). */
  now: string;
  /** When the run started (ISO-8601 UTC). */
  started: string;
  /** Whether the manager stopped handing out jobs (a signal). */
  stopping: boolean;
  /** The job list. */
  source: string;
  /** The results directory. */
  resultsDir: string;
  /** Jobs settled per second since the start. */
  overallRate: number;
  /** Connected runners (at most {@linkcode RUNNER_LIMIT}; `runners` says how many in all). */
  runnerList: RunnerStatus[];
  /** Durations (hand-out to result, as the manager sees them) of the jobs settled in this run. */
  durations: DurationHistogram;
}

/** Window the recent rate is measured over. */
export const RATE_WINDOW_MS = 10_000;
/** Most runners listed in a snapshot. */
export const RUNNER_LIMIT = 1000;
/** Most running jobs listed per runner in a snapshot. */
export const JOBS_PER_RUNNER_LIMIT = 64;
/** Longest job name in a snapshot. */
export const NAME_LIMIT = 200;
/** Histogram bounds, seconds. */
export const DURATION_BUCKETS: readonly number[] = [0.1, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600, 14400];

const SLOTS = 64;

interface LinkInfo {
  joined: number;
  peak: number;
  settled: number;
}

/**
 * Tracks a run for status displays.
 *
 * @example
 * ```ts
 * import { RunStatus } from "./run_status.ts";
 * const held = new Set<number>();
 * const link = { host: "a", peer: "10.0.0.7:5000" };
 * let pending = 2;
 * const status = new RunStatus({ total: 2, source: "jobs.txt", resultsDir: "r", lines: [1, 2], nameOf: String });
 * status.attach({
 *   get pending() { return pending; }, get running() { return held.size; }, leased: 0, stopping: false,
 *   links: () => [link], jobsOf: () => held, protocolOf: () => "text",
 * });
 * status.joined(link);
 * pending--; held.add(0); status.assigned(0, link);
 * console.assert(status.snapshot().runnerList[0].jobs[0].line === 1);
 * held.delete(0); status.settled(0, 0, link);
 * console.assert(status.counts().jobs.done === 1);
 * ```
 */
export class RunStatus {
  readonly #options: RunStatusOptions;
  readonly #now: () => number;
  readonly #started: number;
  #source: RunStatusSource | undefined;
  #done: number;
  #failed: number;
  #lost = 0;
  #settledThisRun = 0;
  #finished = false;
  /** When each running job was handed out (ms). Pruned to running jobs. */
  readonly #assignedAt = new Map<number, number>();
  readonly #links = new WeakMap<StatusLink, LinkInfo>();
  /** Settlements per second, in a ring of {@linkcode SLOTS} seconds. */
  readonly #slotSecond = new Float64Array(SLOTS).fill(-1);
  readonly #slotCount = new Uint32Array(SLOTS);
  readonly #buckets = new Float64Array(DURATION_BUCKETS.length + 1);
  #durationSum = 0;
  #durationCount = 0;

  /** @param options What the run is. */
  constructor(options: RunStatusOptions) {
    this.#options = options;
    this.#now = options.now ?? Date.now;
    this.#started = this.#now();
    const failedEarlier = options.failedEarlier ?? 0;
    this.#done = (options.skipped ?? 0) - failedEarlier;
    this.#failed = failedEarlier;
  }

  /** Connects the live state (the queue and the scheduler). */
  attach(source: RunStatusSource): void {
    this.#source = source;
  }

  /** A runner joined. */
  joined(link: StatusLink): void {
    this.#links.set(link, { joined: this.#now(), peak: 0, settled: 0 });
  }

  /** `job` was handed to `link`. */
  assigned(job: number, link: StatusLink): void {
    this.#assignedAt.set(job, this.#now());
    const info = this.#links.get(link);
    const held = this.#source?.jobsOf(link).size ?? 0;
    if (info !== undefined && held > info.peak) info.peak = held;
    // Jobs that went back to the queue or to a retry leave entries behind.
    if (this.#source !== undefined && this.#assignedAt.size > 2 * this.#source.running + 1024) this.#prune();
  }

  /** `job` settled with `status`, reported by `link`. */
  settled(job: number, status: number, link?: StatusLink): void {
    const now = this.#now();
    if (status === 0) this.#done++;
    else this.#failed++;
    this.#settledThisRun++;
    this.#count(now);
    const at = this.#assignedAt.get(job);
    this.#assignedAt.delete(job);
    if (at !== undefined) this.#observe((now - at) / 1000);
    const info = link === undefined ? undefined : this.#links.get(link);
    if (info !== undefined) info.settled++;
  }

  /** `job` was given up as lost and recorded. */
  lost(job: number): void {
    this.#failed++;
    this.#lost++;
    this.#settledThisRun++;
    this.#count(this.#now());
    this.#assignedAt.delete(job);
  }

  /** The run ended. */
  finish(): void {
    this.#finished = true;
  }

  /** Hand-out times held: bounded by the jobs running, not by the run. */
  get tracked(): number {
    return this.#assignedAt.size;
  }

  /** Jobs settled per second over the last {@linkcode RATE_WINDOW_MS}. */
  rate(): number {
    const now = this.#now();
    const second = Math.floor(now / 1000);
    const windowSeconds = RATE_WINDOW_MS / 1000;
    let n = 0;
    for (let i = 0; i < SLOTS; i++) {
      const s = this.#slotSecond[i];
      if (s > second - windowSeconds && s <= second) n += this.#slotCount[i];
    }
    // Early in a run the window is only as long as the run.
    const span = Math.min(RATE_WINDOW_MS, Math.max(now - this.#started, 1000)) / 1000;
    return n / span;
  }

  /** Counts, rate and ETA: cheap enough to call ten times a second. */
  counts(): StatusCounts {
    const src = this.#source;
    const total = this.#options.total;
    const pending = src?.pending ?? total - this.#done - this.#failed;
    const running = src?.running ?? 0;
    let runners = 0;
    if (src !== undefined) { for (const _ of src.links()) runners++; }
    const rate = this.rate();
    const remaining = pending + running;
    const finished = this.#finished || remaining === 0;
    return {
      jobs: {
        total,
        pending,
        running,
        leased: src?.leased ?? 0,
        done: this.#done,
        failed: this.#failed,
        lost: this.#lost,
        skipped: this.#options.skipped ?? 0,
      },
      runners,
      rate,
      etaSeconds: finished ? 0 : rate > 0 ? remaining / rate : null,
      elapsedSeconds: (this.#now() - this.#started) / 1000,
      finished,
    };
  }

  /**
   * Everything, for `GET /status`. A run with a thousand runners holding 32
   * jobs each costs about 100 ms and 3 MB of JSON at the default limits;
   * the status page asks for fewer.
   *
   * @param limits Most runners listed ({@linkcode RUNNER_LIMIT}) and most jobs
   *   listed per runner ({@linkcode JOBS_PER_RUNNER_LIMIT}).
   */
  snapshot(limits: { runners?: number; jobsPerRunner?: number } = {}): StatusSnapshot {
    const maxRunners = Math.min(limits.runners ?? RUNNER_LIMIT, RUNNER_LIMIT);
    const maxJobs = Math.min(limits.jobsPerRunner ?? JOBS_PER_RUNNER_LIMIT, JOBS_PER_RUNNER_LIMIT);
    const counts = this.counts();
    const src = this.#source;
    const runnerList: RunnerStatus[] = [];
    if (src !== undefined) {
      for (const link of src.links()) {
        if (runnerList.length >= maxRunners) break;
        runnerList.push(this.#describe(link, src, maxJobs));
      }
    }
    const elapsed = counts.elapsedSeconds;
    return {
      version: 1,
      now: new Date(this.#now()).toISOString(),
      started: new Date(this.#started).toISOString(),
      stopping: src?.stopping ?? false,
      source: this.#options.source,
      resultsDir: this.#options.resultsDir,
      ...counts,
      overallRate: elapsed > 0 ? this.#settledThisRun / elapsed : 0,
      runnerList,
      durations: this.histogram(),
    };
  }

  /** Durations of the jobs settled in this run, as a cumulative histogram. */
  histogram(): DurationHistogram {
    const buckets: [number, number][] = [];
    let cumulative = 0;
    for (let i = 0; i < DURATION_BUCKETS.length; i++) {
      cumulative += this.#buckets[i];
      buckets.push([DURATION_BUCKETS[i], cumulative]);
    }
    return { buckets, sum: this.#durationSum, count: this.#durationCount };
  }

  #describe(link: StatusLink, src: RunStatusSource, maxJobs: number): RunnerStatus {
    const info = this.#links.get(link);
    const held = src.jobsOf(link);
    const jobs: RunningJob[] = [];
    for (const job of held) {
      if (jobs.length >= maxJobs) break;
      const at = this.#assignedAt.get(job);
      jobs.push({
        line: this.#options.lines[job],
        name: clip(this.#options.nameOf(job), NAME_LIMIT),
        since: at === undefined ? null : new Date(at).toISOString(),
      });
    }
    return {
      host: link.host,
      peer: link.peer,
      ...(link.runnerId === undefined ? {} : { id: link.runnerId }),
      protocol: src.protocolOf(link),
      joined: new Date(info?.joined ?? this.#started).toISOString(),
      workers: Math.max(info?.peak ?? 0, held.size),
      settled: info?.settled ?? 0,
      jobs,
      running: held.size,
    };
  }

  #count(now: number): void {
    const second = Math.floor(now / 1000);
    const slot = second % SLOTS;
    if (this.#slotSecond[slot] !== second) {
      this.#slotSecond[slot] = second;
      this.#slotCount[slot] = 0;
    }
    this.#slotCount[slot]++;
  }

  #observe(seconds: number): void {
    let i = 0;
    while (i < DURATION_BUCKETS.length && seconds > DURATION_BUCKETS[i]) i++;
    this.#buckets[i]++;
    this.#durationSum += seconds;
    this.#durationCount++;
  }

  /** Drops hand-out times of jobs no runner holds any more. */
  #prune(): void {
    const held = new Set<number>();
    for (const link of this.#source!.links()) for (const job of this.#source!.jobsOf(link)) held.add(job);
    for (const job of this.#assignedAt.keys()) if (!held.has(job)) this.#assignedAt.delete(job);
  }
}

/** `text` cut to `limit` characters, with an ellipsis when cut. */
export function clip(text: string, limit: number): string {
  return text.length <= limit ? text : text.slice(0, limit - 1) + "…";
}

/** Escapes a Prometheus label value. */
function label(value: string): string {
  return value.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

function num(n: number): string {
  return Number.isFinite(n) ? String(Math.round(n * 1e6) / 1e6) : n > 0 ? "+Inf" : n < 0 ? "-Inf" : "NaN";
}

/**
 * A snapshot in the Prometheus text exposition format (version 0.0.4).
 *
 * @param snapshot From {@linkcode RunStatus.snapshot}.
 * @param settledByHost Jobs settled per host in this run.
 */
export function formatMetrics(snapshot: StatusSnapshot, settledByHost: Iterable<[string, number]> = []): string {
  const out: string[] = [];
  const metric = (name: string, type: string, help: string, samples: [labels: string, value: number][]) => {
    out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    for (const [labels, value] of samples) out.push(`${name}${labels} ${num(value)}`);
  };
  const j = snapshot.jobs;
  metric("vico_jobs", "gauge", "Jobs of the run by state (done and failed include jobs settled by earlier runs).", [
    ['{state="pending"}', j.pending],
    ['{state="running"}', j.running],
    ['{state="leased"}', j.leased],
    ['{state="done"}', j.done],
    ['{state="failed"}', j.failed],
    ['{state="lost"}', j.lost],
    ['{state="skipped"}', j.skipped],
  ]);
  metric("vico_jobs_total", "gauge", "Jobs in the list.", [["", j.total]]);
  metric("vico_runners", "gauge", "Connected runners and binary nodes.", [["", snapshot.runners]]);
  metric("vico_jobs_per_second", "gauge", "Jobs settled per second over the last 10 seconds.", [["", snapshot.rate]]);
  if (snapshot.etaSeconds !== null) {
    metric("vico_eta_seconds", "gauge", "Estimated seconds until every job is settled.", [["", snapshot.etaSeconds]]);
  }
  metric("vico_elapsed_seconds", "gauge", "Seconds since the run started.", [["", snapshot.elapsedSeconds]]);
  metric("vico_finished", "gauge", "1 once every job is settled or the run ended.", [["", snapshot.finished ? 1 : 0]]);
  const running = new Map<string, number>();
  for (const r of snapshot.runnerList) running.set(r.host, (running.get(r.host) ?? 0) + r.running);
  metric(
    "vico_host_running_jobs",
    "gauge",
    "Jobs running per runner host.",
    [...running].map(([host, n]) => [`{host="${label(host)}"}`, n]),
  );
  metric(
    "vico_host_settled_jobs",
    "counter",
    "Jobs settled per runner host in this run.",
    [...settledByHost].map(([host, n]) => [`{host="${label(host)}"}`, n]),
  );
  const d = snapshot.durations;
  metric(
    "vico_job_duration_seconds",
    "histogram",
    "Time from hand-out to recorded result of the jobs settled in this run.",
    [
      ...d.buckets.map(([le, n]): [string, number] => [`_bucket{le="${num(le)}"}`, n]),
      ['_bucket{le="+Inf"}', d.count],
      ["_sum", d.sum],
      ["_count", d.count],
    ],
  );
  // The histogram's samples carry their suffix in the "labels" slot.
  return out.join("\n") + "\n";
}
