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
import { HELD_TASK_PREFIX } from "../protocol/vico_extension.ts";
import { type JobQueue, JobState } from "./job_queue.ts";

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
  /** The command line (text name) of a job, to match what returning runners hold. */
  nameOf?: (job: number) => string;
  /** The content key of a job, to match the task a returning binary node holds (`task <key>`). */
  keyOf?: (job: number) => string;
  /** The clock (ms). @default {Date.now} */
  now?: () => number;
}

/** What a result for a job the runner does not hold turns out to be. */
export type Adoption =
  | { readonly kind: "adopted"; readonly job: number }
  | { readonly kind: "settled" }
  | { readonly kind: "unknown" };

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
  readonly #leaseMs: number;
  readonly #nameOf: (job: number) => string;
  readonly #keyOf: (job: number) => string;
  /** Jobs of lost identified runners, waiting for them: runner id → jobs. */
  readonly #leases = new Map<string, Set<number>>();
  #byName: Map<string, number[]> | undefined;
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
    this.#nameOf = options.nameOf ?? String;
    this.#keyOf = options.keyOf ?? String;
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
   * that comes back names the jobs it still holds: those it held before are
   * its again; those it held before and does not name are lost.
   */
  onRunnerJoined(link: RunnerLink, holds: readonly string[] = []): void {
    const st: LinkState = { accepts: this.#classes.map((c) => link.accepts(c)), jobs: new Set() };
    this.#links.set(link, st);
    if (link.runnerId !== undefined) {
      const lease = this.#leases.get(link.runnerId) ?? new Set<number>();
      this.#leases.delete(link.runnerId);
      for (const hold of holds) {
        const job = this.#findHeld(hold, lease);
        if (job === undefined) continue;
        if (lease.has(job)) lease.delete(job);
        else if (!this.queue.claim(job)) continue;
        st.jobs.add(job);
      }
      if (lease.size > 0) this.#giveUp([...lease], link, "its runner came back without it");
    }
    this.#events.onJoined?.(link);
  }

  /**
   * Whether a returning runner's held job or task (`task <key>`) can be taken
   * back: leased to it, or still pending. Does not change anything.
   */
  canAdopt(runnerId: string, hold: string): boolean {
    return this.#findHeld(hold, this.#leases.get(runnerId) ?? new Set()) !== undefined;
  }

  /** The job a held-job line names: one leased to the runner, else a pending one. */
  #findHeld(hold: string, lease: Set<number>): number | undefined {
    const matches = hold.startsWith(HELD_TASK_PREFIX)
      ? (j: number) => this.#keyOf(j) === hold.slice(HELD_TASK_PREFIX.length)
      : (j: number) => this.#nameOf(j) === hold;
    const leased = [...lease].find(matches);
    if (leased !== undefined) return leased;
    const candidates = hold.startsWith(HELD_TASK_PREFIX)
      ? Array.from({ length: this.queue.size }, (_, j) => j).filter(matches)
      : this.#jobsNamed(hold);
    return candidates.find((j) => this.queue.stateOf(j) === JobState.PENDING);
  }

  /** Jobs of earlier runs last held by identified runners: they wait for them (a restart). */
  restoreLeases(heldBy: ReadonlyMap<number, { runner: string }>): void {
    for (const [job, { runner }] of heldBy) {
      let lease = this.#leases.get(runner);
      if (lease === undefined) this.#leases.set(runner, lease = new Set());
      lease.add(job);
    }
    for (const [runner, jobs] of this.#leases) this.#events.onLeased?.(runner, [...jobs], this.#leaseMs);
  }

  /** A lost runner's lease ran out: its jobs go back to the queue (or are given up). */
  expireLease(runnerId: string): void {
    const lease = this.#leases.get(runnerId);
    if (lease === undefined) return;
    this.#leases.delete(runnerId);
    const link = { host: runnerId, peer: "(gone)" } as RunnerLink;
    this.#giveUp([...lease], link, `runner ${runnerId} did not come back in time`);
  }

  /** Jobs held for lost identified runners right now. */
  get leased(): number {
    let n = 0;
    for (const jobs of this.#leases.values()) n += jobs.size;
    return n;
  }

  /**
   * An identified runner reports a job it does not hold (it ran it for an
   * earlier connection or an earlier manager run). Adopts an unsettled job
   * of that name; the first result recorded for a job wins.
   */
  adoptResult(link: RunnerLink, name: string): Adoption {
    const st = this.#links.get(link);
    const named = this.#jobsNamed(name);
    if (st === undefined || named.length === 0) return { kind: "unknown" };
    const open = named.filter((j) => this.queue.stateOf(j) !== JobState.SETTLED && !st.jobs.has(j));
    const mine = link.runnerId === undefined ? undefined : this.#leases.get(link.runnerId);
    const job = open.find((j) => mine?.has(j)) ??
      open.find((j) => this.queue.stateOf(j) === JobState.PENDING && this.queue.claim(j)) ??
      open[0];
    if (job === undefined) return { kind: "settled" };
    for (const lease of this.#leases.values()) lease.delete(job);
    st.jobs.add(job);
    return { kind: "adopted", job };
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
    if (!this.#links.get(link)?.jobs.delete(job)) return false;
    this.#claimed.delete(job);
    this.#detached.add(job);
    return true;
  }

  /** A detached job's result was recorded. */
  settleDetached(job: number, status: number, link: RunnerLink): boolean {
    if (!this.#detached.delete(job) || !this.queue.settle(job)) return false;
    if (status !== 0) this.#failed++;
    this.#settledBy.set(link.host, (this.#settledBy.get(link.host) ?? 0) + 1);
    this.#events.onSettled?.(job, status, link);
    this.#afterSettle();
    return true;
  }

  /** A detached job goes back to the front of the queue; its hand-out is not counted. */
  requeueDetached(job: number): void {
    if (!this.#detached.delete(job)) return;
    this.queue.requeue(job);
    this.queue.refund(job);
    this.#reviewHeld();
  }

  /** A detached job failed and is tried again later (`--retries`). */
  retryDetached(job: number): void {
    if (!this.#detached.delete(job)) return;
    this.queue.retry(job);
    this.#reviewHeld();
  }

  /** Forgets that `link` holds `job` (its late duplicate result was discarded). */
  drop(link: RunnerLink, job: number): void {
    this.#links.get(link)?.jobs.delete(job);
    this.#claimed.delete(job);
  }

  #jobsNamed(name: string): number[] {
    if (this.#byName === undefined) {
      this.#byName = new Map();
      for (let j = 0; j < this.queue.size; j++) {
        const n = this.#nameOf(j);
        const list = this.#byName.get(n);
        if (list === undefined) this.#byName.set(n, [j]);
        else list.push(j);
      }
    }
    return this.#byName.get(name) ?? [];
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
        this.#events.onLost?.(job, `${why}; lost ${this.queue.losses(job)} time(s)`, link);
      } else {
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
        this.#events.onAssigned?.(job, link);
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
    this.#events.onAssigned?.(gang.job, link);
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

  /** The connected runners (for status displays; read-only). */
  links(): IterableIterator<RunnerLink> {
    return this.#links.keys();
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

  /**
   * A runner is gone (closed, broke protocol, timed out): its jobs go back to
   * the front. An identified runner's jobs wait for it for the lease time
   * first: it may only have lost its connection.
   */
  onRunnerLost(link: RunnerLink): void {
    const st = this.#links.get(link);
    this.#links.delete(link);
    this.#held.delete(link);
    if (st === undefined || st.jobs.size === 0) {
      if (st !== undefined) this.#reviewHeld();
      return;
    }
    const jobs = [...st.jobs].filter((j) => this.queue.stateOf(j) === JobState.RUNNING);
    if (
      link.runnerId !== undefined && this.#leaseMs > 0 && !this.#stopping && jobs.every((j) => !this.#gangs.has(j))
    ) {
      let lease = this.#leases.get(link.runnerId);
      if (lease === undefined) this.#leases.set(link.runnerId, lease = new Set());
      for (const job of jobs) {
        this.#claimed.delete(job);
        lease.add(job);
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
      this.#claimed.delete(job);
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
