/**
 * Scheduling, as `on*` handlers over the {@linkcode JobQueue} plus an
 * outbound {@linkcode RunnerLink} per connected runner. It knows nothing of
 * sockets or wire formats, so it is tested by driving the handlers with
 * recording links.
 *
 * Rules:
 * - a request is answered with the oldest pending job the runner can take
 *   (its class: text runners take plain jobs, binary nodes also bundles
 *   whose modules they announced);
 * - with nothing it can take pending but such jobs still running elsewhere,
 *   a request from a runner that holds no job is held (a requeued job will
 *   still find a runner); a text runner that holds jobs is released at once
 *   (holding its request would deadlock its communication lock);
 * - when no job it could ever take remains, a runner is released (nothing
 *   left at all) or refused (jobs remain, but none it can take);
 * - a gang job (K nodes) is handed to K nodes; each stages it and reports
 *   ready; all K are started together;
 * - a runner that is lost gives its jobs back to the front of the queue; a
 *   gang that loses a member is abandoned by all and requeued once;
 * - a job settles once, and only by a runner holding it.
 *
 * @module
 */

import type { JobClass } from "./job_list.ts";
import type { JobQueue } from "./job_queue.ts";

/** What the scheduler can tell one connected runner (its outbound side). */
export interface RunnerLink {
  /** Name for logs and counts (the runner's announced host name, or its address). */
  readonly host: string;
  /** The runner's address, for logs. */
  readonly peer: string;
  /** Whether this runner can carry jobs of class `cls`. */
  accepts(cls: JobClass): boolean;
  /** Answers the pending request with `job`; `rank` numbers gang members from 1. */
  assign(job: number, rank: number): void;
  /** Answers the pending request: there is nothing left to do. */
  release(): void;
  /** Answers the pending request: jobs remain, but none this runner can take. */
  refuse(reason: string): void;
  /** Starts the staged task now (gang members are started together). */
  start?(): void;
  /** The task this runner holds was abandoned (another gang member was lost). */
  abandon?(reason: string): void;
}

/** Notifications for logs, progress display and the summary. */
export interface SchedulerEvents {
  /** A runner completed its handshake. */
  onJoined?(link: RunnerLink): void;
  /** A job settled with `status`, reported by `link`. */
  onSettled?(job: number, status: number, link: RunnerLink): void;
  /** Jobs of a lost runner went back to the queue. */
  onRequeued?(jobs: readonly number[], link: RunnerLink): void;
  /**
   * A job's runners were lost too many times: it is given up. The listener
   * records it and then calls {@linkcode Scheduler.settleLost}.
   */
  onLost?(job: number, reason: string, link: RunnerLink): void;
}

/** Options for {@linkcode Scheduler}. */
export interface SchedulerOptions {
  /** Losses of a job's runner after which the job is given up as lost. @default {3} */
  maxAttempts?: number;
}

interface LinkState {
  /** Per class: can this runner take it. */
  accepts: boolean[];
  /** Jobs it holds (a gang job is held by every member). */
  jobs: Set<number>;
}

interface Gang {
  job: number;
  size: number;
  cls: number;
  members: RunnerLink[];
  ready: Set<RunnerLink>;
}

/**
 * Hands out jobs to runners and tracks which runner holds which job.
 *
 * @example
 * ```ts
 * import { JobQueue } from "./job_queue.ts";
 * import { PLAIN_CLASS } from "./job_list.ts";
 * import { Scheduler } from "./scheduler.ts";
 * const s = new Scheduler(new JobQueue(1), [PLAIN_CLASS]);
 * const got: number[] = [];
 * const link = {
 *   host: "a", peer: "10.0.0.7:5000", accepts: () => true,
 *   assign: (j: number) => void got.push(j), release() {}, refuse() {},
 * };
 * s.onRunnerJoined(link);
 * s.onJobRequest(link);
 * console.assert(got[0] === 0);
 * ```
 */
export class Scheduler {
  /** The queue being drained. */
  readonly queue: JobQueue;
  /** Resolves when every job is settled. */
  readonly done: Promise<void>;
  readonly #classes: readonly JobClass[];
  readonly #events: SchedulerEvents;
  readonly #links = new Map<RunnerLink, LinkState>();
  readonly #claimed = new Set<number>();
  readonly #held = new Set<RunnerLink>();
  readonly #gangs = new Map<number, Gang>();
  readonly #assembling: Gang[] = [];
  readonly #settledBy = new Map<string, number>();
  /** Jobs given up as lost, waiting to be recorded. */
  readonly #lost = new Set<number>();
  readonly #maxAttempts: number;
  #failed = 0;
  #stopping = false;
  #resolveDone!: () => void;

  /**
   * @param queue The jobs to hand out.
   * @param classes The job classes `queue` numbers.
   * @param events Optional observers.
   * @param options Limits.
   */
  constructor(
    queue: JobQueue,
    classes: readonly JobClass[],
    events: SchedulerEvents = {},
    options: SchedulerOptions = {},
  ) {
    this.queue = queue;
    this.#classes = classes;
    this.#events = events;
    this.#maxAttempts = options.maxAttempts ?? 3;
    this.done = new Promise((resolve) => (this.#resolveDone = resolve));
    if (queue.finished) this.#resolveDone();
  }

  /** Jobs that settled with a non-zero status. */
  get failed(): number {
    return this.#failed;
  }

  /** Settled job counts per runner host (a gang job counts for each member). */
  get settledByHost(): ReadonlyMap<string, number> {
    return this.#settledBy;
  }

  /** Number of connected runners. */
  get runners(): number {
    return this.#links.size;
  }

  /** Classes with unsettled jobs that no connected runner can take. */
  unservedClasses(): number[] {
    const out: number[] = [];
    for (let c = 0; c < this.#classes.length; c++) {
      if (this.queue.unsettledIn(c) === 0) continue;
      let served = false;
      for (const st of this.#links.values()) if ((served = st.accepts[c])) break;
      if (!served) out.push(c);
    }
    return out;
  }

  /** A runner connected and completed its handshake. */
  onRunnerJoined(link: RunnerLink): void {
    this.#links.set(link, { accepts: this.#classes.map((c) => link.accepts(c)), jobs: new Set() });
    this.#events.onJoined?.(link);
  }

  /** Whether dispatch has been stopped (the manager is shutting down). */
  get stopping(): boolean {
    return this.#stopping;
  }

  /**
   * Stops handing out jobs: every request from now on, and every held one,
   * is released. Jobs already out finish and are recorded as usual.
   */
  stopDispatch(): void {
    this.#stopping = true;
    this.#reviewHeld();
  }

  /** A runner asks for a job: assign, hold, release or refuse it. */
  onJobRequest(link: RunnerLink): void {
    const st = this.#links.get(link);
    if (st === undefined) return;
    if (this.#stopping) {
      link.release();
      return;
    }
    for (const gang of this.#assembling) {
      if (st.accepts[gang.cls] && !gang.members.includes(link)) {
        this.#joinGang(gang, link, st);
        return;
      }
    }
    const job = this.queue.take((c) => st.accepts[c]);
    if (job !== -1) {
      const cls = this.queue.classOf(job);
      const size = this.#classes[cls].nodes;
      if (size > 1) {
        const gang: Gang = { job, size, cls, members: [], ready: new Set() };
        this.#gangs.set(job, gang);
        this.#assembling.push(gang);
        this.#joinGang(gang, link, st);
        for (const held of [...this.#held]) {
          if (!this.#assembling.includes(gang)) break;
          const hs = this.#links.get(held)!;
          if (hs.accepts[cls]) {
            this.#held.delete(held);
            this.#joinGang(gang, held, hs);
          }
        }
      } else {
        st.jobs.add(job);
        link.assign(job, 1);
      }
      return;
    }
    let mayCome = false;
    let remaining = 0;
    for (let c = 0; c < this.#classes.length; c++) {
      const unsettled = this.queue.unsettledIn(c);
      remaining += unsettled;
      if (st.accepts[c] && unsettled > 0) mayCome = true;
    }
    if (mayCome && st.jobs.size === 0) {
      this.#held.add(link);
    } else if (!mayCome && remaining > 0) {
      link.refuse(this.#whyNone(st));
    } else {
      link.release();
    }
  }

  #joinGang(gang: Gang, link: RunnerLink, st: LinkState): void {
    gang.members.push(link);
    st.jobs.add(gang.job);
    if (gang.members.length === gang.size) this.#assembling.splice(this.#assembling.indexOf(gang), 1);
    link.assign(gang.job, gang.members.length);
  }

  #whyNone(st: LinkState): string {
    const needs = new Set<string>();
    for (let c = 0; c < this.#classes.length; c++) {
      if (this.queue.unsettledIn(c) === 0 || st.accepts[c]) continue;
      const cls = this.#classes[c];
      needs.add(cls.modules.length > 0 ? `modules ${cls.modules.join(",")}` : "a binary-protocol node");
    }
    return `no remaining task fits this node; they need ${[...needs].join("; ")}`;
  }

  /** The jobs `link` holds right now. */
  jobsOf(link: RunnerLink): ReadonlySet<number> {
    return this.#links.get(link)?.jobs ?? new Set();
  }

  /**
   * A runner announces a result: claims the first job it holds that
   * `matches` and whose result is not already arriving.
   *
   * @returns The job, or `undefined` if the runner holds no such job.
   */
  claimResult(link: RunnerLink, matches: (job: number) => boolean): number | undefined {
    for (const job of this.#links.get(link)?.jobs ?? []) {
      if (!this.#claimed.has(job) && matches(job)) {
        this.#claimed.add(job);
        return job;
      }
    }
    return undefined;
  }

  /** A runner has staged `job` and waits for Start; gang members start together. */
  onReadyToStart(link: RunnerLink, job: number): void {
    if (!this.#links.get(link)?.jobs.has(job)) return;
    const gang = this.#gangs.get(job);
    if (gang === undefined) {
      link.start?.();
      return;
    }
    gang.ready.add(link);
    if (gang.ready.size === gang.size) { for (const member of gang.members) member.start?.(); }
  }

  /** The members of the gang running `job` (just the holder for a plain job). */
  gangOf(job: number): readonly RunnerLink[] | undefined {
    return this.#gangs.get(job)?.members;
  }

  /**
   * A result was recorded: the job is settled. Only a runner that holds the
   * job can settle it; a gang job is settled once for all its members.
   *
   * @returns Whether the job was settled by this call.
   */
  onJobSettled(link: RunnerLink, job: number, status: number): boolean {
    const members = this.#release(link, job);
    if (members === undefined || !this.queue.settle(job)) return false;
    if (status !== 0) this.#failed++;
    for (const m of members) this.#settledBy.set(m.host, (this.#settledBy.get(m.host) ?? 0) + 1);
    this.#events.onSettled?.(job, status, link);
    this.#afterSettle();
    return true;
  }

  /**
   * A job failed and will be tried again (`--retries`): it goes to the back
   * of the queue. Only a runner that holds it can say so.
   */
  onJobRetry(link: RunnerLink, job: number): boolean {
    if (this.#release(link, job) === undefined) return false;
    this.queue.retry(job);
    this.#reviewHeld();
    return true;
  }

  /** A job given up as lost (see {@linkcode SchedulerEvents.onLost}) was recorded. */
  settleLost(job: number): boolean {
    if (!this.#lost.delete(job) || !this.queue.settle(job)) return false;
    this.#failed++;
    this.#afterSettle();
    return true;
  }

  /** Takes `job` off `link` (and its gang); the members that held it, or undefined. */
  #release(link: RunnerLink, job: number): RunnerLink[] | undefined {
    const st = this.#links.get(link);
    if (st === undefined || !st.jobs.has(job)) return undefined;
    const members = this.#gangs.get(job)?.members ?? [link];
    this.#gangs.delete(job);
    for (const m of members) this.#links.get(m)?.jobs.delete(job);
    this.#claimed.delete(job);
    return members;
  }

  #afterSettle(): void {
    this.#reviewHeld();
    if (this.queue.finished) this.#resolveDone();
  }

  /** A runner is gone (closed, broke protocol, timed out): its jobs go back to the front. */
  onRunnerLost(link: RunnerLink): void {
    const st = this.#links.get(link);
    this.#links.delete(link);
    this.#held.delete(link);
    if (st === undefined || st.jobs.size === 0) {
      if (st !== undefined) this.#reviewHeld();
      return;
    }
    const jobs = [...st.jobs];
    // Requeue in reverse so the runner's oldest job ends up first.
    for (let i = jobs.length - 1; i >= 0; i--) {
      const job = jobs[i];
      const gang = this.#gangs.get(job);
      if (gang !== undefined) {
        this.#gangs.delete(job);
        const at = this.#assembling.indexOf(gang);
        if (at !== -1) this.#assembling.splice(at, 1);
        for (const m of gang.members) {
          if (m === link) continue;
          this.#links.get(m)?.jobs.delete(job);
          m.abandon?.(`gang member ${link.host} (${link.peer}) was lost`);
        }
      }
      this.#claimed.delete(job);
      this.queue.noteLoss(job);
      if (this.queue.losses(job) >= this.#maxAttempts) {
        this.#lost.add(job);
        this.#events.onLost?.(
          job,
          `its runner was lost ${this.queue.losses(job)} time(s); last ${link.host} (${link.peer})`,
          link,
        );
      } else {
        this.queue.requeue(job);
      }
    }
    const requeued = jobs.filter((j) => !this.#lost.has(j));
    if (requeued.length > 0) this.#events.onRequeued?.(requeued, link);
    this.#reviewHeld();
  }

  /** Gives held runners another look: assign, keep holding, release or refuse. */
  #reviewHeld(): void {
    for (const held of [...this.#held]) {
      this.#held.delete(held);
      this.onJobRequest(held);
    }
  }
}
