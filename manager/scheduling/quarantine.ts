/**
 * Black-hole detection: a runner whose jobs fail fast while the same jobs
 * succeed elsewhere (a node with a broken environment: every command "not
 * found" within milliseconds) would otherwise swallow the whole queue.
 *
 * A fast failure (non-zero within `fastMs` of the hand-out) is not evidence
 * by itself: half of a list may fail at once for its own reasons (`grep -q`,
 * `test -f`), and a runner may be handed all of them in a row (two runners
 * taking turns on a list where every other job fails). So each host's fast
 * failures are held back as suspects, and a host is quarantined only on
 * evidence that the failures are its own:
 *
 * - **Job-level**: two jobs that failed fast on it, since its last success,
 *   succeeded on other hosts (with `--retries`); its next fast failure
 *   quarantines it.
 * - **Fleet-level**: after `streak` fast failures in a row while another
 *   host succeeded recently, it is given a break (`pause`: nothing for
 *   `pauseMs`): the fleet takes the jobs it would have taken, so its next job
 *   is not tied to its last ones. If, in that break, a host in good standing
 *   fails fast too, fast failures are part of this list: the suspects are
 *   recorded as the genuine failures they are and the host needs twice the
 *   streak next time. If instead its first job after the break fails fast
 *   while no one else's did, its fast-failure rate is far above the fleet's:
 *   it is quarantined.
 *
 * A quarantine lasts an expiring period that doubles each time (`initialMs`
 * up to `maxMs`); the quarantined host's suspects go back to the queue
 * without spending an attempt. With no other host succeeding, suspects are
 * recorded as failed: a job that fails everywhere is still recorded failed.
 * Suspects are never held longer than `holdMs`, nor once nothing else is
 * left to run.
 *
 * Known limit: a run of legitimate fast failures that the rest of the fleet
 * cannot sample meanwhile (every other runner busy with a long job for the
 * whole break) still looks like a black hole.
 *
 * Pure: the caller passes the time and acts on the verdicts.
 *
 * @module
 */

/** Thresholds; `streak: 0` turns detection off. */
export interface QuarantineOptions {
  /** Fast failures in a row that make a host suspect (when others succeed). @default {5} */
  streak: number;
  /** A failure within this long of the hand-out is fast. @default {500} */
  fastMs: number;
  /** First quarantine; each next one doubles. @default {60000} */
  initialMs: number;
  /** Longest quarantine. @default {3600000} */
  maxMs: number;
  /** A success on another host counts as evidence for this long. @default {600000} */
  windowMs: number;
  /** Longest time a suspect is held back. @default {5000} */
  holdMs: number;
  /** The break a suspect host is given before it is judged (less than `holdMs`). @default {1000} */
  pauseMs: number;
}

/**
 * Jobs that failed fast on a host and then succeeded elsewhere, since its
 * last success, that quarantine it at its next fast failure (one could be a
 * flaky job).
 */
const CONTRADICTIONS = 2;

/** The defaults. */
export const DEFAULT_QUARANTINE: Readonly<QuarantineOptions> = Object.freeze({
  streak: 5,
  fastMs: 500,
  initialMs: 60_000,
  maxMs: 3_600_000,
  windowMs: 600_000,
  holdMs: 5_000,
  pauseMs: 1_000,
});

/** What to do after a result. */
export interface Verdict {
  /** Jobs whose results are to be recorded now (held suspects included, of any host). */
  readonly record: readonly number[];
  /** Held suspects to run again elsewhere, without spending an attempt. */
  readonly requeue: readonly number[];
  /** Whether the job just reported is held back as a suspect. */
  readonly held: boolean;
  /** The host is quarantined until `until`, and why. */
  readonly quarantine?: { readonly until: number; readonly reason: string };
  /**
   * The host is to be given a break until `until`: a short one before it is
   * judged, not a quarantine (nothing to log, nothing requeued). The caller
   * answers the reporting runner nothing (no acknowledgement, so no new job)
   * until then; its results are not lost, only later.
   */
  readonly pause?: { readonly until: number };
}

interface Suspicion {
  /** When the break began and ends. */
  since: number;
  until: number;
  /** The streak that made it suspect. */
  streak: number;
}

interface HostState {
  /** Fast failures since its last success or slow failure. */
  streak: number;
  suspects: { job: number; at: number; status: number }[];
  level: number;
  until: number;
  lastSuccess: number;
  /** Times its suspicion came to nothing: the streak needed doubles each time. */
  cleared: number;
  suspicion?: Suspicion;
  /** Jobs that failed fast on it and then succeeded elsewhere, since its last success. */
  contradicted: Set<number>;
  /** Where the last of those succeeded. */
  contradictedOn?: string;
}

/** Per-host fast-failure tracking. */
export class Quarantine {
  readonly #o: QuarantineOptions;
  readonly #hosts = new Map<string, HostState>();
  /** The host each job last failed fast on, until it succeeds (bounded by the list). */
  readonly #failedOn = new Map<number, { host: string; at: number }>();

  /** @param options Thresholds. */
  constructor(options: Partial<QuarantineOptions> = {}) {
    this.#o = { ...DEFAULT_QUARANTINE, ...options };
  }

  /** Whether detection is on. */
  get enabled(): boolean {
    return this.#o.streak > 0;
  }

  #host(host: string): HostState {
    let h = this.#hosts.get(host);
    if (h === undefined) {
      h = { streak: 0, suspects: [], level: 0, until: 0, lastSuccess: -Infinity, cleared: 0, contradicted: new Set() };
      this.#hosts.set(host, h);
    }
    return h;
  }

  /** Whether `host` may be given jobs at `now`. */
  isQuarantined(host: string, now: number): boolean {
    return (this.#hosts.get(host)?.until ?? 0) > now;
  }

  /** Fast failures in a row that make `h` suspect. */
  #needed(h: HostState): number {
    return this.#o.streak * 2 ** Math.min(h.cleared, 10);
  }

  /**
   * A result from `host` for `job`: its status, and how long after the
   * hand-out it came.
   */
  onResult(host: string, job: number, status: number, durationMs: number, now: number): Verdict {
    if (!this.enabled) return { record: [job], requeue: [], held: false };
    const h = this.#host(host);
    const s = h.suspicion;
    // The break delays what the host had running when it began: that wait is not the job's.
    const took = s === undefined ? durationMs : durationMs - overlap(now - durationMs, now, s.since, s.until);
    if (status === 0 || took >= this.#o.fastMs) {
      if (status === 0) {
        h.lastSuccess = now;
        h.level = 0;
        h.contradicted.clear();
        const failed = this.#failedOn.get(job);
        this.#failedOn.delete(job);
        const culprit = failed === undefined || failed.host === host ? undefined : this.#host(failed.host);
        if (culprit !== undefined && failed!.at > culprit.lastSuccess) {
          culprit.contradicted.add(job);
          culprit.contradictedOn = host;
        }
      }
      return { record: [...this.#clear(h), job], requeue: [], held: false };
    }
    this.#failedOn.set(job, { host, at: now });
    if (h.until > now) {
      // Still in quarantine (a job it had before it was barred): run it elsewhere.
      return { record: [], requeue: [job], held: true };
    }
    h.streak++;
    h.suspects.push({ job, at: now, status });
    if (h.contradicted.size >= CONTRADICTIONS) {
      const n = h.contradicted.size;
      return this.#quarantine(
        h,
        now,
        `${n} jobs that failed fast on it succeeded elsewhere (last on ${h.contradictedOn})`,
      );
    }
    // A fast failure from a host in good standing: this list fails fast for its own reasons.
    const record = h.streak < this.#needed(h) && now - h.lastSuccess <= this.#o.windowMs
      ? this.#clearSuspectedBut(host)
      : [];
    if (s !== undefined) {
      if (now - durationMs < s.until) return { record, requeue: [], held: true }; // handed out before the break
      // Evidence is a host in good standing that succeeded during the break:
      // the list still succeeds elsewhere now. Without one (the tail of a
      // run is often nothing but the list's own failures, retried), its
      // failures are the list's own.
      const succeededMeanwhile = [...this.#hosts].some(([other, o]) =>
        other !== host && o.suspicion === undefined && o.until <= now && o.lastSuccess >= s.since
      );
      if (!succeededMeanwhile) {
        h.cleared++;
        return { record: [...record, ...this.#clear(h)], requeue: [], held: false };
      }
      const reason = `its last ${s.streak} jobs failed (${exits(h)}) within ${this.#o.fastMs} ms ` +
        `while other runners succeed, and it failed again after a ${seconds(s.until - s.since)} break ` +
        `in which other runners succeeded and none failed fast`;
      return { ...this.#quarantine(h, now, reason), record };
    }
    if (h.streak < this.#needed(h)) return { record, requeue: [], held: true };
    const evidence = [...this.#hosts].some(([other, o]) => other !== host && now - o.lastSuccess <= this.#o.windowMs);
    if (!evidence) return { record: [...record, ...this.#clear(h)], requeue: [], held: false };
    h.suspicion = { since: now, until: now + this.#o.pauseMs, streak: h.streak };
    return { record, requeue: [], held: true, pause: { until: h.suspicion.until } };
  }

  /** Quarantines `h`: its suspects go back to the queue. */
  #quarantine(h: HostState, now: number, reason: string): Verdict {
    const ms = Math.min(this.#o.initialMs * 2 ** h.level, this.#o.maxMs);
    h.level++;
    h.until = now + ms;
    const requeue = h.suspects.map((s) => s.job);
    h.suspects = [];
    h.streak = 0;
    h.suspicion = undefined;
    h.contradicted.clear();
    return { record: [], requeue, held: true, quarantine: { until: h.until, reason } };
  }

  /** Ends `h`'s streak: its suspects are the failures they are. */
  #clear(h: HostState): number[] {
    const out = h.suspects.map((s) => s.job);
    h.suspects = [];
    h.streak = 0;
    h.suspicion = undefined;
    return out;
  }

  /** Clears every suspect host but `host`, each needing twice the streak next time. */
  #clearSuspectedBut(host: string): number[] {
    const out: number[] = [];
    for (const [name, o] of this.#hosts) {
      if (name === host || o.suspicion === undefined) continue;
      o.cleared++;
      out.push(...this.#clear(o));
    }
    return out;
  }

  /**
   * Lets go of every held suspect, to be recorded as the failures they are.
   * For when nothing else is pending or running: no more results can come
   * to build a streak, so holding them would only delay the end of the run.
   */
  release(): number[] {
    const out: number[] = [];
    for (const h of this.#hosts.values()) {
      for (const s of h.suspects) out.push(s.job);
      h.suspects = [];
      h.suspicion = undefined;
    }
    return out;
  }

  /** Suspects held longer than allowed: record them as the failures they are. */
  expire(now: number): number[] {
    const out: number[] = [];
    for (const h of this.#hosts.values()) {
      const keep = h.suspects.filter((s) => now - s.at < this.#o.holdMs);
      for (const s of h.suspects) if (now - s.at >= this.#o.holdMs) out.push(s.job);
      h.suspects = keep;
      if (keep.length === 0) h.suspicion = undefined;
    }
    return out;
  }
}

/** How much of `[a, b]` lies within `[c, d]`. */
function overlap(a: number, b: number, c: number, d: number): number {
  return Math.max(0, Math.min(b, d) - Math.max(a, c));
}

/** "exit 127" or "exit 1, 2" for a host's suspects. */
function exits(h: HostState): string {
  return `exit ${[...new Set(h.suspects.map((s) => s.status))].join(", ")}`;
}

/** A duration in whole seconds, at least one ("1s"). */
function seconds(ms: number): string {
  return `${Math.max(1, Math.round(ms / 1000))}s`;
}
