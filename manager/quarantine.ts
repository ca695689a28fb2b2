/**
 * Black-hole detection: a runner whose jobs fail fast while the same jobs
 * succeed elsewhere (a node with a broken environment: every command "not
 * found" within milliseconds) would otherwise swallow the whole queue.
 *
 * Each host's fast failures (non-zero within `fastMs` of being handed out)
 * are held back as suspects instead of being recorded. When a host reaches
 * `streak` of them in a row while another host succeeded recently, it is
 * quarantined for an expiring period that doubles each time (`initialMs`
 * up to `maxMs`), and its suspects go back to the queue without spending an
 * attempt. Without such evidence, suspects are recorded as the genuine
 * failures they are: a job that fails everywhere is still recorded failed.
 * Suspects are never held longer than `holdMs`, nor once nothing else is
 * left to run.
 *
 * Pure: the caller passes the time and acts on the verdicts.
 *
 * @module
 */

/** Thresholds; `streak: 0` turns detection off. */
export interface QuarantineOptions {
  /** Fast failures in a row that quarantine a host (when others succeed). @default {5} */
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
}

/** The defaults. */
export const DEFAULT_QUARANTINE: Readonly<QuarantineOptions> = Object.freeze({
  streak: 5,
  fastMs: 500,
  initialMs: 60_000,
  maxMs: 3_600_000,
  windowMs: 600_000,
  holdMs: 5_000,
});

/** What to do after a result. */
export interface Verdict {
  /** Jobs whose results are to be recorded now (held suspects included). */
  readonly record: readonly number[];
  /** Held suspects to run again elsewhere, without spending an attempt. */
  readonly requeue: readonly number[];
  /** Whether the job just reported is held back as a suspect. */
  readonly held: boolean;
  /** The host is quarantined until `until`, and why. */
  readonly quarantine?: { readonly until: number; readonly reason: string };
}

interface HostState {
  streak: number;
  suspects: { job: number; at: number; status: number }[];
  level: number;
  until: number;
  lastSuccess: number;
}

/** Per-host fast-failure tracking. */
export class Quarantine {
  readonly #o: QuarantineOptions;
  readonly #hosts = new Map<string, HostState>();

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
      this.#hosts.set(host, h = { streak: 0, suspects: [], level: 0, until: 0, lastSuccess: -Infinity });
    }
    return h;
  }

  /** Whether `host` may be given jobs at `now`. */
  isQuarantined(host: string, now: number): boolean {
    return (this.#hosts.get(host)?.until ?? 0) > now;
  }

  /**
   * A result from `host` for `job`: its status, and how long after the
   * hand-out it came.
   */
  onResult(host: string, job: number, status: number, durationMs: number, now: number): Verdict {
    if (!this.enabled) return { record: [job], requeue: [], held: false };
    const h = this.#host(host);
    if (status === 0 || durationMs >= this.#o.fastMs) {
      if (status === 0) {
        h.lastSuccess = now;
        h.level = 0;
      }
      h.streak = 0;
      const record = [...h.suspects.map((s) => s.job), job];
      h.suspects = [];
      return { record, requeue: [], held: false };
    }
    if (h.until > now) {
      // Still in quarantine (a job it had before it was barred): run it elsewhere.
      return { record: [], requeue: [job], held: true };
    }
    h.streak++;
    h.suspects.push({ job, at: now, status });
    if (h.streak < this.#o.streak) return { record: [], requeue: [], held: true };
    const evidence = [...this.#hosts].some(([other, s]) => other !== host && now - s.lastSuccess <= this.#o.windowMs);
    const suspects = h.suspects;
    h.suspects = [];
    if (!evidence) return { record: suspects.map((s) => s.job), requeue: [], held: false };
    const ms = Math.min(this.#o.initialMs * 2 ** h.level, this.#o.maxMs);
    h.level++;
    h.until = now + ms;
    h.streak = 0;
    const statuses = [...new Set(suspects.map((s) => s.status))].join(", ");
    const reason = `its last ${suspects.length} jobs failed (exit ${statuses}) within ${this.#o.fastMs} ms ` +
      `while other runners succeed`;
    return { record: [], requeue: suspects.map((s) => s.job), held: true, quarantine: { until: h.until, reason } };
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
    }
    return out;
  }
}
