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
 * - whether a delivery may settle a job is the {@linkcode Ledger}'s call
 *   (the commit authority); once it settles, the job leaves wherever it
 *   is (a runner, a lease, a held suspect, the queue).
 *
 * @module
 */

import type { JobClass } from "../jobs/job_list.ts";
import { type JobQueue, JobState } from "../jobs/job_queue.ts";
import { Ledger } from "../results/ledger.ts";

/** What the scheduler can tell one connected runner (its outbound side). */
export interface RunnerLink {
  /** Name for logs and counts (the runner's announced host name, or its address). */
  readonly host: string;
  /** The runner's address, for logs. */
  readonly peer: string;
  /** A stable identity, for runners that can come back after being lost (the vico extension). */
  readonly runnerId?: string;
  /** Whether this runner can carry jobs of class `cls`. */
  accepts(cls: JobClass): boolean;
  /**
   * Answers the pending request with `job`, handed out as `attempt`; `rank`
   * numbers gang members from 1.
   */
  assign(job: number, rank: number, attempt: number): void;
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
  /** A job was handed to a runner. */
  onAssigned?(job: number, link: RunnerLink): void;
  /**
   * An identified runner was lost holding jobs: they wait for it for
   * `ms` milliseconds; the listener calls {@linkcode Scheduler.expireLease}
   * when that time is up.
   */
  onLeased?(runnerId: string, jobs: readonly number[], ms: number): void;
}

/** Options for {@linkcode Scheduler}. */
export interface SchedulerOptions {
  /** Losses of a job's runner after which the job is given up as lost. @default {3} */
  maxAttempts?: number;
  /** How long an identified runner's jobs wait for it after it is lost, in ms (0: not at all). @default {0} */
  leaseMs?: number;
  /** The content key of a job (kept for jobs handed to identified runners, whose kept results name it). */
  keyOf?: (job: number) => string;
  /** The commit authority hand-outs are issued to. @default {a new one for this queue} */
  ledger?: Ledger;
  /** The clock (ms). @default {Date.now} */
  now?: () => number;
}

/** A job an identified runner says it still holds (running, or finished and kept): the hand-out it came with. */
export interface HeldJob {
  /** The job. */
  readonly job: number;
  /** The attempt it was handed out as. */
  readonly attempt: number;
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
 * import { JobQueue } from "../jobs/job_queue.ts";
 * import { PLAIN_CLASS } from "../jobs/job_list.ts";
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
  readonly #held = new Set<RunnerLink>();
  readonly #gangs = new Map<number, Gang>();
  readonly #assembling: Gang[] = [];
  readonly #settledBy = new Map<string, number>();
  /** The runner holding each single-node job that is out. */
  readonly #holder = new Map<number, RunnerLink>();
  /** Leased jobs: job → the runner id it waits for. */
  readonly #leasedTo = new Map<number, string>();
  /** Jobs given up as lost, waiting to be recorded. */
  readonly #lost = new Set<number>();
  readonly #maxAttempts: number;
  readonly #leaseMs: number;
  readonly #keyOf: (job: number) => string;
  /** The commit authority. */
  readonly ledger: Ledger;
  /** Jobs of lost identified runners, waiting for them: runner id → jobs. */
  readonly #leases = new Map<string, Set<number>>();
  /** Jobs taken off their runner while a verdict is pending (quarantine suspects). */
  readonly #detached = new Set<number>();
  /** Quarantined hosts: host → until (ms). */
  readonly #barred = new Map<string, number>();
  readonly #now: () => number;
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
    this.#leaseMs = options.leaseMs ?? 0;
    this.#keyOf = options.keyOf ?? String;
    this.ledger = options.ledger ?? new Ledger(queue.size, "run", [], (job) => queue.stateOf(job) === JobState.SETTLED);
    this.#now = options.now ?? Date.now;
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

  /**
   * A runner connected and completed its handshake. An identified runner
   * that comes back names the jobs it still holds (already checked against
   * the {@linkcode Ledger}: hand-outs it was issued): those it held before
   * are its again, as are pending ones; those leased to it that it does not
   * name are lost.
   */
  onRunnerJoined(link: RunnerLink, holds: readonly HeldJob[] = []): void {
    const st: LinkState = { accepts: this.#classes.map((c) => link.accepts(c)), jobs: new Set() };
    this.#links.set(link, st);
    if (link.runnerId !== undefined) {
      const lease = this.#leases.get(link.runnerId) ?? new Set<number>();
      this.#leases.delete(link.runnerId);
      for (const { job } of holds) {
        if (lease.delete(job)) this.#leasedTo.delete(job);
        else if (!this.queue.claim(job)) continue;
        st.jobs.add(job);
        this.#holder.set(job, link);
      }
      for (const job of lease) this.#leasedTo.delete(job);
      if (lease.size > 0) this.#giveUp([...lease], link, "its runner came back without it");
    }
    this.#events.onJoined?.(link);
  }

  /** Jobs of earlier runs last held by identified runners: they wait for them (a restart). */
  restoreLeases(heldBy: ReadonlyMap<number, { runner: string }>): void {
    for (const [job, { runner }] of heldBy) {
      let lease = this.#leases.get(runner);
      if (lease === undefined) this.#leases.set(runner, lease = new Set());
      lease.add(job);
      this.#leasedTo.set(job, runner);
    }
    for (const [runner, jobs] of this.#leases) this.#events.onLeased?.(runner, [...jobs], this.#leaseMs);
  }

  /** A lost runner's lease ran out: its jobs go back to the queue (or are given up). */
  expireLease(runnerId: string): void {
    const lease = this.#leases.get(runnerId);
    if (lease === undefined) return;
    this.#leases.delete(runnerId);
    for (const job of lease) this.#leasedTo.delete(job);
    const link = { host: runnerId, peer: "(gone)" } as RunnerLink;
    this.#giveUp([...lease], link, `runner ${runnerId} did not come back in time`);
  }

  /** Jobs held for lost identified runners right now. */
  get leased(): number {
    let n = 0;
    for (const jobs of this.#leases.values()) n += jobs.size;
    return n;
  }

  /** Keeps `host` from being given jobs until `until` (ms). */
  bar(host: string, until: number): void {
    this.#barred.set(host, until);
  }

  /** Lets a quarantined host have jobs again. */
  lift(host: string): void {
    this.#barred.delete(host);
    this.#reviewHeld();
  }

  /** Takes `job` off `link` while a verdict on its result is pending; it stays running. */
  detach(link: RunnerLink, job: number): boolean {
    if (this.#holder.get(job) !== link || !this.#links.get(link)?.jobs.delete(job)) return false;
    this.#holder.delete(job);
    this.#detached.add(job);
    return true;
  }

  /** A detached job goes back to the front of the queue (its attempt number is not reused). */
  requeueDetached(job: number): void {
    if (!this.#detached.delete(job)) return;
    this.queue.requeue(job);
    this.#reviewHeld();
  }

  /** Forgets that `link` holds `job` (its late duplicate result was discarded). */
  drop(link: RunnerLink, job: number): void {
    if (this.#holder.get(job) === link) this.#holder.delete(job);
    if (this.#gangs.has(job)) return;
    this.#links.get(link)?.jobs.delete(job);
  }

  /** Counts a loss for each job and requeues it, or gives it up as lost. */
  #giveUp(jobs: number[], link: RunnerLink, why: string): void {
    const requeued: number[] = [];
    for (let i = jobs.length - 1; i >= 0; i--) {
      const job = jobs[i];
      if (this.queue.stateOf(job) !== JobState.RUNNING) continue;
      this.queue.noteLoss(job);
      if (this.queue.losses(job) >= this.#maxAttempts) {
        this.#lost.add(job);
        this.#holder.delete(job);
        this.#events.onLost?.(job, `${why}; lost ${this.queue.losses(job)} time(s)`, link);
      } else {
        this.#holder.delete(job);
        this.queue.requeue(job);
        requeued.unshift(job);
      }
    }
    if (requeued.length > 0) this.#events.onRequeued?.(requeued, link);
    this.#reviewHeld();
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
    // A quarantined host takes nothing now; it is held (or released) as if
    // nothing were pending, and looked at again when the quarantine lifts.
    const barred = (this.#barred.get(link.host) ?? 0) > this.#now();
    for (const gang of barred ? [] : this.#assembling) {
      if (st.accepts[gang.cls] && !gang.members.includes(link)) {
        this.#joinGang(gang, link, st);
        return;
      }
    }
    const job = barred ? -1 : this.queue.take((c) => st.accepts[c]);
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
        this.#holder.set(job, link);
        this.#issue(job, link);
        this.#events.onAssigned?.(job, link);
        link.assign(job, 1, this.queue.attempts(job));
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
    this.#events.onAssigned?.(gang.job, link);
    if (gang.members.length === gang.size) this.#assembling.splice(this.#assembling.indexOf(gang), 1);
    if (gang.members.length === 1) this.#issue(gang.job, undefined);
    link.assign(gang.job, gang.members.length, this.queue.attempts(gang.job));
  }

  /** Tells the ledger of a hand-out (a gang's, to no one runner in particular). */
  #issue(job: number, link: RunnerLink | undefined): void {
    const runner = link?.runnerId;
    this.ledger.issue(
      job,
      { attempt: this.queue.attempts(job), run: this.ledger.run, ...(runner !== undefined ? { runner } : {}) },
      runner !== undefined ? this.#keyOf(job) : undefined,
    );
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

  /** The connected runners (for status displays; read-only). */
  links(): IterableIterator<RunnerLink> {
    return this.#links.keys();
  }

  /** The jobs `link` holds right now. */
  jobsOf(link: RunnerLink): ReadonlySet<number> {
    return this.#links.get(link)?.jobs ?? new Set();
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
   * A result was recorded (the {@linkcode Ledger} let it): the job is
   * settled, wherever it is now (with `link` or another runner, leased,
   * held as a suspect, given up as lost, or back in the queue). A gang job
   * is settled once for all its members.
   *
   * @returns Whether the job was settled by this call.
   */
  onJobSettled(link: RunnerLink, job: number, status: number): boolean {
    if (this.queue.stateOf(job) === JobState.SETTLED) return false;
    const members = this.#unplace(job) ?? [link];
    if (this.queue.stateOf(job) === JobState.PENDING) this.queue.claim(job);
    if (!this.queue.settle(job)) return false;
    if (status !== 0) this.#failed++;
    for (const m of members) this.#settledBy.set(m.host, (this.#settledBy.get(m.host) ?? 0) + 1);
    this.#events.onSettled?.(job, status, link);
    this.#afterSettle();
    return true;
  }

  /**
   * A job failed and will be tried again (`--retries`): it goes to the back
   * of the queue, unless it is already out again elsewhere (or queued),
   * which is its retry.
   */
  onJobRetry(link: RunnerLink, job: number): boolean {
    if (this.queue.stateOf(job) !== JobState.RUNNING) {
      this.queue.noteFailure(job);
      return this.queue.stateOf(job) === JobState.PENDING;
    }
    const holder = this.#holder.get(job);
    const mine = this.#gangs.has(job) ? this.#gangs.get(job)!.members.includes(link) : holder === link;
    const leasedTo = this.#leasedTo.get(job);
    if (
      !mine && !this.#detached.has(job) && !(leasedTo !== undefined && leasedTo === link.runnerId) &&
      (holder !== undefined || this.#gangs.has(job) || leasedTo !== undefined || this.#lost.has(job))
    ) {
      this.queue.noteFailure(job);
      return false;
    }
    this.#unplace(job);
    this.queue.retry(job);
    this.#reviewHeld();
    return true;
  }

  /** A job given up as lost (see {@linkcode SchedulerEvents.onLost}) was recorded. */
  settleLost(job: number): boolean {
    if (this.queue.stateOf(job) === JobState.SETTLED) return false;
    this.#unplace(job);
    if (this.queue.stateOf(job) === JobState.PENDING) this.queue.claim(job);
    if (!this.queue.settle(job)) return false;
    this.#failed++;
    this.#afterSettle();
    return true;
  }

  /**
   * Takes `job` out of wherever it is out (its runner or gang, a lease, the
   * held suspects, the lost ones). Returns the gang's members or the
   * holder, if it had any.
   */
  #unplace(job: number): RunnerLink[] | undefined {
    const gang = this.#gangs.get(job);
    const holder = this.#holder.get(job);
    const members = gang?.members ?? (holder !== undefined ? [holder] : undefined);
    this.#gangs.delete(job);
    if (gang !== undefined) {
      const at = this.#assembling.indexOf(gang);
      if (at !== -1) this.#assembling.splice(at, 1);
    }
    this.#holder.delete(job);
    for (const m of members ?? []) this.#links.get(m)?.jobs.delete(job);
    const runner = this.#leasedTo.get(job);
    if (runner !== undefined) {
      this.#leasedTo.delete(job);
      this.#leases.get(runner)?.delete(job);
    }
    this.#detached.delete(job);
    this.#lost.delete(job);
    return members;
  }

  #afterSettle(): void {
    this.#reviewHeld();
    if (this.queue.finished) this.#resolveDone();
  }

  /**
   * A runner is gone (closed, broke protocol, timed out): its jobs go back to
   * the front. An identified runner's jobs wait for it for the lease time
   * first: it may only have lost its connection.
   */
  onRunnerLost(link: RunnerLink, blame = true): void {
    const st = this.#links.get(link);
    this.#links.delete(link);
    this.#held.delete(link);
    if (st === undefined || st.jobs.size === 0) {
      if (st !== undefined) this.#reviewHeld();
      return;
    }
    const jobs = [...st.jobs].filter((j) => this.queue.stateOf(j) === JobState.RUNNING);
    // A runner dropped for breaking the protocol gets no lease: its lease
    // running out would count a loss against jobs that did nothing wrong.
    if (
      blame && link.runnerId !== undefined && this.#leaseMs > 0 && !this.#stopping &&
      jobs.every((j) => !this.#gangs.has(j))
    ) {
      let lease = this.#leases.get(link.runnerId);
      if (lease === undefined) this.#leases.set(link.runnerId, lease = new Set());
      for (const job of jobs) {
        this.#holder.delete(job);
        lease.add(job);
        this.#leasedTo.set(job, link.runnerId);
      }
      if (jobs.length > 0) this.#events.onLeased?.(link.runnerId, jobs, this.#leaseMs);
      this.#reviewHeld();
      return;
    }
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
    }
    if (!blame) {
      // The runner broke the protocol: its fault, not the jobs'. They go
      // back without counting a loss against them.
      for (let i = jobs.length - 1; i >= 0; i--) {
        this.#holder.delete(jobs[i]);
        this.queue.requeue(jobs[i]);
      }
      if (jobs.length > 0) this.#events.onRequeued?.(jobs, link);
      this.#reviewHeld();
      return;
    }
    this.#giveUp(jobs, link, `its runner ${link.host} (${link.peer}) was lost`);
  }

  /** Gives held runners another look: assign, keep holding, release or refuse. */
  #reviewHeld(): void {
    for (const held of [...this.#held]) {
      this.#held.delete(held);
      this.onJobRequest(held);
    }
  }
}
