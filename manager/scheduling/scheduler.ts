/**
 * Scheduling, as `on*` handlers over the {@linkcode JobQueue} plus an
 * outbound {@linkcode RunnerLink} per connected runner. It knows nothing of
 * sockets or wire formats, so it is tested by driving the handlers with
 * recording links. Gangs, leases and held suspects are parts of their own
 * (`gangs.ts`, `leases.ts`, `suspects.ts`); this module reacts to runners
 * and decides.
 *
 * Rules:
 * - a request is answered with the oldest pending job the runner can take
 *   (its class: text runners take plain jobs, binary nodes also bundles
 *   whose modules they announced);
 * - with nothing it can take pending but such jobs still running elsewhere,
 *   a request from a runner that carries no job is parked (a requeued job
 *   will still find a runner); a text runner that carries jobs is released
 *   at once (parking its request would deadlock its communication lock);
 * - when no job it could ever take remains, a runner is released (nothing
 *   left at all) or refused (jobs remain, but none it can take);
 * - a gang job (K nodes) is handed to K nodes; each stages it and reports
 *   ready; all K are started together;
 * - a runner that is lost gives its jobs back to the front of the queue; a
 *   gang that loses a member is abandoned by all and requeued once;
 * - whether a delivery may settle a job is the {@linkcode Ledger}'s call
 *   (the commit authority); once it settles, the job leaves wherever it
 *   is (a runner, a lease, the held suspects, the queue).
 *
 * Glossary (one word per meaning, here and in `manager.ts`):
 * - **carry**: a runner carries the jobs that are out with it (running, or
 *   ended and kept until delivered); its **carrier** is the runner a
 *   single-node job is out with. A runner that joins again names the jobs
 *   it still carries ({@linkcode CarriedJob}).
 * - **park**: a job request that cannot be answered yet is parked, and
 *   looked at again whenever something changes.
 * - **lease**: the jobs a lost identified runner carried wait for it for the
 *   lease time; they are leased to it.
 * - **hold**: only the quarantine's sense: a fast failure is held (back) as
 *   a suspect while the verdict on it is pending (`Verdict.held`,
 *   `holdMs`, the ledger's `claimHeld`).
 * - **end**: a job ends when its process exits on its runner.
 * - **settle**: a job settles once its record is durable (the ledger's
 *   call), once per job; the run is **done** when every job is settled
 *   ({@linkcode Scheduler.done}; the queue's `finished`).
 * - **over**: the run is over, done or stopped (`Manager.finished`
 *   resolves then, with the summary).
 * - **host**: what a runner is counted and judged as ({@linkcode RunnerLink.host}).
 *
 * @module
 */

import type { JobClass } from "../jobs/job_list.ts";
import { type JobQueue, JobState } from "../jobs/job_queue.ts";
import { Ledger } from "../results/ledger.ts";
import { type Gang, Gangs } from "./gangs.ts";
import { Leases } from "./leases.ts";
import { Suspects } from "./suspects.ts";
import type { CarriedJob, RunnerLink } from "./runner_link.ts";

export type { CarriedJob, RunnerLink } from "./runner_link.ts";

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
   * An identified runner was lost carrying jobs: they are leased to it for
   * `ms` milliseconds. Without `timers` (see {@linkcode SchedulerOptions}),
   * the listener calls {@linkcode Scheduler.expireLease} when that time is up.
   */
  onLeased?(runnerId: string, jobs: readonly number[], ms: number): void;
  /** A host's quarantine is over (with `timers`; it is lifted right after). */
  onLifted?(host: string): void;
}

/** Options for {@linkcode Scheduler}. */
export interface SchedulerOptions {
  /** Losses of a job's runner after which the job is given up as lost. @default {3} */
  maxAttempts?: number;
  /** How long an identified runner's jobs are leased to it after it is lost, in ms (0: not at all). @default {0} */
  leaseMs?: number;
  /** The content key of a job (kept for jobs handed to identified runners, whose kept results name it). */
  keyOf?: (job: number) => string;
  /** The commit authority hand-outs are issued to. @default {a new one for this queue} */
  ledger?: Ledger;
  /** The clock (ms). @default {Date.now} */
  now?: () => number;
  /**
   * Leases run out and quarantines end on timers of the scheduler's own
   * ({@linkcode Scheduler.close} stops them); otherwise the caller calls
   * {@linkcode Scheduler.expireLease} and {@linkcode Scheduler.lift}. @default {false}
   */
  timers?: boolean;
}

interface LinkState {
  /** Per class: can this runner take it. */
  accepts: boolean[];
  /** Jobs it carries (a gang job is carried by every member). */
  jobs: Set<number>;
}

/**
 * Hands out jobs to runners and tracks which runner carries which job.
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
  /** Resolves when every job is settled (the run is done). */
  readonly done: Promise<void>;
  /** The commit authority. */
  readonly ledger: Ledger;
  readonly #classes: readonly JobClass[];
  readonly #events: SchedulerEvents[];
  readonly #links = new Map<RunnerLink, LinkState>();
  /** Runners whose job request is parked. */
  readonly #parked = new Set<RunnerLink>();
  readonly #gangs = new Gangs();
  readonly #leases: Leases;
  readonly #suspects: Suspects;
  /** Settled jobs per host. */
  readonly #settledBy = new Map<string, number>();
  /** The carrier of each single-node job that is out. */
  readonly #carrier = new Map<number, RunnerLink>();
  /** Jobs given up as lost, waiting to be recorded. */
  readonly #lost = new Set<number>();
  readonly #maxAttempts: number;
  readonly #leaseMs: number;
  readonly #keyOf: (job: number) => string;
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
    this.#events = [events];
    this.#maxAttempts = options.maxAttempts ?? 3;
    this.#leaseMs = options.leaseMs ?? 0;
    this.#keyOf = options.keyOf ?? String;
    this.ledger = options.ledger ?? new Ledger(queue.size, "run", [], (job) => queue.stateOf(job) === JobState.SETTLED);
    this.#now = options.now ?? Date.now;
    this.#leases = new Leases(options.timers ? (runnerId) => this.expireLease(runnerId) : undefined);
    this.#suspects = new Suspects(
      options.timers
        ? (host) => {
          this.#emit((e) => e.onLifted?.(host));
          this.lift(host);
        }
        : undefined,
      this.#now,
    );
    this.done = new Promise((resolve) => (this.#resolveDone = resolve));
    if (queue.done) this.#resolveDone();
  }

  /**
   * Adds observers after construction: parts built on the scheduler (the
   * result recorder, the fleet watch) that it must tell too. Each event
   * goes to every observer, in the order they were added.
   */
  listen(events: SchedulerEvents): void {
    this.#events.push(events);
  }

  #emit(tell: (events: SchedulerEvents) => void): void {
    for (const events of this.#events) tell(events);
  }

  /** Stops the scheduler's own timers (see `timers` in {@linkcode SchedulerOptions}): the run is over. */
  close(): void {
    this.#leases.close();
    this.#suspects.close();
  }

  /** Jobs that settled with a non-zero status. */
  get failed(): number {
    return this.#failed;
  }

  /** Settled job counts per runner {@linkcode RunnerLink.host} (a gang job counts for each member). */
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
   * that comes back names the jobs it still carries (already checked
   * against the {@linkcode Ledger}: hand-outs it was issued): those leased
   * to it are its again, as are pending ones; those leased to it that it
   * does not name are lost.
   */
  onRunnerJoined(link: RunnerLink, carried: readonly CarriedJob[] = []): void {
    const st: LinkState = { accepts: this.#classes.map((c) => link.accepts(c)), jobs: new Set() };
    this.#links.set(link, st);
    if (link.runnerId !== undefined) {
      const lease = this.#leases.take(link.runnerId);
      for (const { job } of carried) {
        if (!lease.delete(job) && !this.queue.claim(job)) continue;
        st.jobs.add(job);
        this.#carrier.set(job, link);
      }
      if (lease.size > 0) this.#giveUp([...lease], link, "its runner came back without it");
    }
    this.#emit((e) => e.onJoined?.(link));
  }

  /** Jobs of earlier runs last carried by identified runners: they are leased to them (a restart). */
  restoreLeases(carriedBy: ReadonlyMap<number, { runner: string }>): void {
    for (const [job, { runner }] of carriedBy) this.#leases.grant(runner, [job]);
    for (const [runner, jobs] of this.#leases.entries()) this.#leased(runner, [...jobs]);
  }

  #leased(runnerId: string, jobs: readonly number[]): void {
    this.#emit((e) => e.onLeased?.(runnerId, jobs, this.#leaseMs));
    this.#leases.arm(runnerId, this.#leaseMs);
  }

  /** A lost runner's lease ran out: its jobs go back to the queue (or are given up). */
  expireLease(runnerId: string): void {
    if (!this.#leases.has(runnerId)) return;
    const lease = this.#leases.take(runnerId);
    const link = { host: runnerId, peer: "(gone)" } as RunnerLink;
    this.#giveUp([...lease], link, `runner ${runnerId} did not come back in time`);
  }

  /** Jobs leased to lost identified runners right now. */
  get leased(): number {
    return this.#leases.size;
  }

  /** Keeps `host` from being given jobs until `until` (ms). */
  bar(host: string, until: number): void {
    this.#suspects.bar(host, until);
  }

  /** Lets a quarantined host have jobs again. */
  lift(host: string): void {
    this.#suspects.unbar(host);
    this.#reviewParked();
  }

  /** Takes `job` off `link` while a verdict on its result is pending (held as a suspect); it stays running. */
  detach(link: RunnerLink, job: number): boolean {
    if (this.#carrier.get(job) !== link || !this.#links.get(link)?.jobs.delete(job)) return false;
    this.#carrier.delete(job);
    this.#suspects.hold(job);
    return true;
  }

  /** A held suspect goes back to the front of the queue (its attempt number is not reused). */
  requeueDetached(job: number): void {
    if (!this.#suspects.release(job)) return;
    this.queue.requeue(job);
    this.#reviewParked();
  }

  /** Forgets that `link` carries `job` (its late duplicate result was discarded). */
  drop(link: RunnerLink, job: number): void {
    if (this.#carrier.get(job) === link) this.#carrier.delete(job);
    if (this.#gangs.has(job)) return;
    this.#links.get(link)?.jobs.delete(job);
  }

  /**
   * `link` gives `job` back without having started it (a pipelined runner
   * that is stopping): it goes back to the front of the queue, and no loss
   * is counted against it. False when `link` does not carry it.
   */
  giveBack(link: RunnerLink, job: number): boolean {
    const st = this.#links.get(link);
    if (st === undefined || !st.jobs.has(job) || this.#gangs.has(job)) return false;
    if (this.queue.stateOf(job) !== JobState.RUNNING) return false;
    st.jobs.delete(job);
    if (this.#carrier.get(job) === link) this.#carrier.delete(job);
    this.queue.requeue(job);
    this.#reviewParked();
    return true;
  }

  /** Withdraws `link`'s held request, if the scheduler holds one: it is not answered. */
  withdraw(link: RunnerLink): void {
    this.#parked.delete(link);
  }

  /** Counts a loss for each job and requeues it, or gives it up as lost. */
  #giveUp(jobs: number[], link: RunnerLink, why: string): void {
    const requeued: number[] = [];
    for (let i = jobs.length - 1; i >= 0; i--) {
      const job = jobs[i];
      if (this.queue.stateOf(job) !== JobState.RUNNING) continue;
      this.queue.noteLoss(job);
      this.#carrier.delete(job);
      if (this.queue.losses(job) >= this.#maxAttempts) {
        this.#lost.add(job);
        this.#emit((e) => e.onLost?.(job, `${why}; lost ${this.queue.losses(job)} time(s)`, link));
      } else {
        this.queue.requeue(job);
        requeued.unshift(job);
      }
    }
    if (requeued.length > 0) this.#emit((e) => e.onRequeued?.(requeued, link));
    this.#reviewParked();
  }

  /** Whether dispatch has been stopped (the manager is shutting down). */
  get stopping(): boolean {
    return this.#stopping;
  }

  /**
   * Stops handing out jobs: every request from now on, and every parked
   * one, is released. Jobs already out end and are recorded as usual.
   */
  stopDispatch(): void {
    this.#stopping = true;
    this.#reviewParked();
  }

  /** A runner asks for a job: assign, park, release or refuse it. */
  onJobRequest(link: RunnerLink): void {
    const st = this.#links.get(link);
    if (st === undefined) return;
    if (this.#stopping) {
      link.release();
      return;
    }
    // A quarantined host takes nothing now; it is parked (or released) as
    // if nothing were pending, and looked at again when the quarantine lifts.
    const barred = this.#suspects.isBarred(link.host, this.#now());
    for (const gang of barred ? [] : this.#gangs.gathering()) {
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
        const gang = this.#gangs.open(job, size, cls);
        this.#joinGang(gang, link, st);
        for (const parked of [...this.#parked]) {
          if (!this.#gangs.isGathering(gang)) break;
          const ps = this.#links.get(parked)!;
          if (ps.accepts[cls]) {
            this.#parked.delete(parked);
            this.#joinGang(gang, parked, ps);
          }
        }
      } else {
        st.jobs.add(job);
        this.#carrier.set(job, link);
        this.#issue(job, link);
        this.#emit((e) => e.onAssigned?.(job, link));
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
    if (mayCome && (st.jobs.size === 0 || link.reportsWhileAsking === true)) {
      this.#parked.add(link);
    } else if (!mayCome && remaining > 0) {
      link.refuse(this.#whyNone(st));
    } else {
      link.release();
    }
  }

  #joinGang(gang: Gang, link: RunnerLink, st: LinkState): void {
    const rank = this.#gangs.join(gang, link);
    st.jobs.add(gang.job);
    this.#emit((e) => e.onAssigned?.(gang.job, link));
    if (rank === 1) this.#issue(gang.job, undefined);
    link.assign(gang.job, rank, this.queue.attempts(gang.job));
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

  /** The jobs `link` carries right now. */
  jobsOf(link: RunnerLink): ReadonlySet<number> {
    return this.#links.get(link)?.jobs ?? new Set();
  }

  /** A runner has staged `job` and waits for Start; gang members start together. */
  onReadyToStart(link: RunnerLink, job: number): void {
    if (!this.#links.get(link)?.jobs.has(job)) return;
    if (!this.#gangs.has(job)) {
      link.start?.();
      return;
    }
    for (const member of this.#gangs.ready(job, link) ?? []) member.start?.();
  }

  /** The members of the gang running `job` (undefined for a single-node job). */
  gangOf(job: number): readonly RunnerLink[] | undefined {
    return this.#gangs.membersOf(job);
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
    this.#emit((e) => e.onSettled?.(job, status, link));
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
    const carrier = this.#carrier.get(job);
    const members = this.#gangs.membersOf(job);
    const mine = members !== undefined ? members.includes(link) : carrier === link;
    const leasedTo = this.#leases.runnerOf(job);
    if (
      !mine && !this.#suspects.isHeld(job) && !(leasedTo !== undefined && leasedTo === link.runnerId) &&
      (carrier !== undefined || members !== undefined || leasedTo !== undefined || this.#lost.has(job))
    ) {
      this.queue.noteFailure(job);
      return false;
    }
    this.#unplace(job);
    this.queue.retry(job);
    this.#reviewParked();
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
   * carrier, if it had any.
   */
  #unplace(job: number): readonly RunnerLink[] | undefined {
    const gang = this.#gangs.close(job);
    const carrier = this.#carrier.get(job);
    const members = gang?.members ?? (carrier !== undefined ? [carrier] : undefined);
    this.#carrier.delete(job);
    for (const m of members ?? []) this.#links.get(m)?.jobs.delete(job);
    this.#leases.drop(job);
    this.#suspects.release(job);
    this.#lost.delete(job);
    return members;
  }

  #afterSettle(): void {
    this.#reviewParked();
    if (this.queue.done) this.#resolveDone();
  }

  /**
   * A runner is gone (closed, broke protocol, timed out): its jobs go back to
   * the front. An identified runner's jobs are leased to it first: it may
   * only have lost its connection.
   */
  onRunnerLost(link: RunnerLink, blame = true): void {
    const st = this.#links.get(link);
    this.#links.delete(link);
    this.#parked.delete(link);
    if (st === undefined || st.jobs.size === 0) {
      if (st !== undefined) this.#reviewParked();
      return;
    }
    const jobs = [...st.jobs].filter((j) => this.queue.stateOf(j) === JobState.RUNNING);
    // A runner dropped for breaking the protocol gets no lease: its lease
    // running out would count a loss against jobs that did nothing wrong.
    if (
      blame && link.runnerId !== undefined && this.#leaseMs > 0 && !this.#stopping &&
      jobs.every((j) => !this.#gangs.has(j))
    ) {
      for (const job of jobs) this.#carrier.delete(job);
      this.#leases.grant(link.runnerId, jobs);
      if (jobs.length > 0) this.#leased(link.runnerId, jobs);
      this.#reviewParked();
      return;
    }
    // Requeue in reverse so the runner's oldest job ends up first.
    for (let i = jobs.length - 1; i >= 0; i--) {
      const job = jobs[i];
      const gang = this.#gangs.close(job);
      for (const m of gang?.members ?? []) {
        if (m === link) continue;
        this.#links.get(m)?.jobs.delete(job);
        m.abandon?.(`gang member ${link.host} (${link.peer}) was lost`);
      }
    }
    if (!blame) {
      // The runner broke the protocol: its fault, not the jobs'. They go
      // back without counting a loss against them.
      for (let i = jobs.length - 1; i >= 0; i--) {
        this.#carrier.delete(jobs[i]);
        this.queue.requeue(jobs[i]);
      }
      if (jobs.length > 0) this.#emit((e) => e.onRequeued?.(jobs, link));
      this.#reviewParked();
      return;
    }
    this.#giveUp(jobs, link, `its runner ${link.host} (${link.peer}) was lost`);
  }

  /** Gives parked requests another look: assign, keep parked, release or refuse. */
  #reviewParked(): void {
    for (const parked of [...this.#parked]) {
      this.#parked.delete(parked);
      this.onJobRequest(parked);
    }
  }
}
