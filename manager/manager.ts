/**
 * A manager: serves a job list to runners and records every result. With
 * `local: N` it also starts N workers of its own in its process (runners,
 * made by the `localWorkers` hook the caller gives: see
 * `cli/local_runners.ts`), which makes one process a complete local run.
 * They reach the manager through an in-memory listener served beside the
 * TCP (or TLS) one: the same sessions, handshake, secret and journal as a
 * remote runner, without a socket.
 *
 * @module
 */

import { DEFAULT_LIMITS, type Limits } from "../core/limits.ts";
import type { SharedSecret } from "../protocol/auth.ts";
import { DEFAULT_PORT } from "../protocol/messages.ts";
import { VicoError } from "../core/errors.ts";
import { heldTag, PIPE_FEATURE, type ServerHello, TAG_FEATURE } from "../protocol/vico_extension.ts";
import { listenTcp } from "../transport/conn_transport.ts";
import { MemoryListener } from "../transport/memory_transport.ts";
import { listenTls, type TlsIdentity } from "../transport/tls.ts";
import { mergeListeners, type Transport, type TransportListener } from "../transport/transport.ts";
import { logger, RateLimitedLog } from "../util/log.ts";
import { isoNow } from "../util/iso_now.ts";
import { FleetWatch } from "./scheduling/fleet_watch.ts";
import { jobKey } from "./jobs/job_key.ts";
import { identityOf, type JobList } from "./jobs/job_list.ts";
import { JobQueue } from "./jobs/job_queue.ts";
import { OwnerSession, type OwnerSessionContext } from "./sessions/owner_session.ts";
import { Quarantine, type QuarantineOptions } from "./scheduling/quarantine.ts";
import { ResultRecorder } from "./results/result_recorder.ts";
import { firstRunSource, type JobRecord, ResultsStore } from "./results/results_store.ts";
import { ResultsDir, unusable } from "./results/results_dir.ts";
import { checkSameList, planReopen, planResume, type ResumePlan } from "./jobs/resume.ts";
import { type CarriedJob, type RunnerLink, Scheduler, type SchedulerEvents } from "./scheduling/scheduler.ts";
import { Ledger } from "./results/ledger.ts";
import { RunStatus } from "./observe/run_status.ts";
import { Server, type ServerOptions } from "./sessions/server.ts";
import { ManagerTextSession, type TextSessionContext } from "./sessions/text_session.ts";
import type { JobRunner } from "../core/executed_job.ts";
import { LocalSession, type LocalSessionContext } from "./sessions/local_session.ts";

/** How a worker the manager started in its own process (`local`) ended. */
export type LocalWorkerEnd =
  | { readonly kind: "finished" | "stopped"; readonly reason?: undefined }
  | { readonly kind: string; readonly reason: string };

/** A worker the manager starts in its own process (`local`): a binary node, composed in by the caller. */
export interface LocalWorker {
  /** Runs until the manager has no more jobs, or until it fails or is aborted. */
  run(): Promise<LocalWorkerEnd>;
  /** Ends it now, killing its jobs. */
  abort(reason: string): void;
}

/** What a local binary node is told: how to dial and how to present itself. */
export interface LocalWorkerSpec {
  /** The manager's listening host (for messages: the node dials through {@linkcode dial}). */
  hostname: string;
  /** The manager's listening port (for messages). */
  port: number;
  /** Opens a connection to the manager in this process (no socket). Throws once the manager stopped listening. */
  dial: () => Transport;
  /** The run's shared secret. */
  secret?: SharedSecret;
  /** Tasks it runs at once. */
  workers: number;
  /** It runs task bundles. */
  protocol: "binary";
  /** Modules it offers. */
  modules: string[];
  /** Always true: it runs inside the manager's process. */
  embedded: true;
}

/** The executor of `local` text workers, and its end. */
export interface LocalJobs extends JobRunner {
  /** Removes what it kept (its spool files); called once every local worker has ended. */
  close(): Promise<void>;
}

/**
 * Makes what `local` needs from the runner's side. `manager/` does not know
 * runners: the caller (the `manager` command, or `localRunners` from
 * `cli/local_runners.ts` in `mod.ts`) composes them in, so the two sides
 * never import each other.
 */
export interface LocalWorkerFactory {
  /**
   * Opens the executor the `local` text workers run their jobs through. The
   * workers themselves are served in the manager's process, with no
   * connection (see `LocalSession`).
   */
  openJobs(spec: { shell?: string }): Promise<LocalJobs>;
  /** A binary node in this process for task bundles, connected in memory (the binary protocol stages files). */
  node(spec: LocalWorkerSpec): LocalWorker;
  /**
   * Throws, with the reason, when a local node could not prepare itself
   * here (its work directory in `TMPDIR`): checked before the run starts,
   * so that the run does not wait on a node that can never work.
   */
  nodeReady?(): Promise<void>;
}

/** Options for {@linkcode Manager.start}. */
export interface ManagerOptions {
  /** The jobs to serve. */
  jobs: JobList;
  /** Where results go. */
  resultsDir: string;
  /** Move an existing results directory aside first (once the port is bound). @default {false} */
  fresh?: boolean;
  /**
   * `resultsDir` is the list's default one, named after it (the user named
   * none): refused if it holds another list's results ({@linkcode checkSameList}).
   * @default {false}
   */
  defaultResults?: boolean;
  /** Address to listen on. @default {"127.0.0.1"} */
  hostname?: string;
  /** Port to listen on; 0 picks a free one. @default {DEFAULT_PORT} */
  port?: number;
  /**
   * Stops the run gracefully once aborted (as {@linkcode Manager.stop}),
   * and from the start when aborted before it: no job goes out then, not
   * even to local workers.
   */
  stopSignal?: AbortSignal;
  /**
   * Listen on TCP for runners. False for a run that only `local` workers
   * serve: no port is opened, so nobody else on the machine can take its
   * jobs or send it results ({@linkcode Manager.address} is then
   * `memory:0`). @default {true}
   */
  serveRunners?: boolean;
  /** Runner workers to start in this process, connected in memory (needs `localWorkers`). @default {0} */
  local?: number;
  /** Makes the `local` workers. */
  localWorkers?: LocalWorkerFactory;
  /** Wire limits. */
  limits?: Partial<Limits>;
  /** fsync outputs and journal before acknowledging. @default {true} */
  durable?: boolean;
  /** Times a job that exits non-zero is tried again. @default {0} */
  retries?: number;
  /** Times a job's runner may be lost before the job is recorded as lost. @default {3} */
  maxAttempts?: number;
  /** Time limit for each job (text runners with the vico extension, binary nodes). */
  jobTimeoutMs?: number;
  /** Seconds between liveness pulses (vico runners) and Status probes (binary nodes). @default {10} */
  pulseSec?: number;
  /** How long a lost identified runner's jobs wait for it, in ms. @default {120000} */
  leaseMs?: number;
  /** A plain runner holding nothing and silent this long is dropped. @default {300000} */
  idleTimeoutMs?: number;
  /** Black-hole detection thresholds (`streak: 0` turns it off). */
  quarantine?: Partial<QuarantineOptions>;
  /** How long after the last result to wait for runners to close cleanly. @default {5000} */
  drainTimeoutMs?: number;
  /** How long {@linkcode Manager.stop} waits for jobs already out. @default {30000} */
  stopTimeoutMs?: number;
  /** How long a connection has, from accept, to complete its handshake. @default {30000} */
  handshakeTimeoutMs?: number;
  /** Most connections mid-handshake at once. @default {256} */
  maxHandshaking?: number;
  /** A runner whose output stalls this long mid-result is dropped. @default {60000} */
  transferIdleTimeoutMs?: number;
  /** A runner's next job waits until its earlier results are recorded (for `--halt`). @default {false} */
  settleBeforeNext?: boolean;
  /** Most connections at once. @default {4096} */
  maxConnections?: number;
  /** Serve TLS with this certificate and key (both protocols, one port). */
  tls?: TlsIdentity;
  /** Every runner must prove it knows this secret before it sees a job. */
  secret?: SharedSecret;
  /** Called when a job settles (for progress display). */
  onSettled?: (job: number, status: number, host: string) => void;
  /**
   * Called with job `job`'s settling record once it is durable: its output
   * file (`record.output`, relative to the results directory) is final then.
   */
  onRecorded?: (job: number, record: JobRecord) => void;
  /** Called once, before serving, with the jobs an earlier run on the results directory settled (not run again). */
  onResumed?: (settledBefore: readonly number[]) => void;
  /** The shell the `local` workers run jobs under. @default {"/bin/sh"} */
  shell?: string;
  /**
   * `--resume-failed`: first reopen the jobs whose settled record failed or
   * was lost (durable `reopen` records, see `ResultsStore.reopen`), so they
   * run again; then resume as usual. @default {false}
   */
  rerunFailed?: boolean;
  /** With `rerunFailed`: called once, before serving, with the jobs reopened (maybe none) and the jobs to run. */
  onReopened?: (reopened: readonly number[], toRun: number) => void;
}

/** What a finished (or stopped) run did. */
export interface RunSummary {
  /** Jobs in the list. */
  jobs: number;
  /** Jobs settled by an earlier run on the same results directory, not run again. */
  skipped: number;
  /** Jobs of the list that exited 0 (this run or earlier). */
  succeeded: number;
  /** Jobs of the list that exited non-zero or were lost (this run or earlier). */
  failed: number;
  /** Jobs not settled: only when the run was stopped. */
  unsettled: number;
  /** Whether the run ended before every job settled. */
  stopped: boolean;
  /** Wall time from start to the last result, in milliseconds. */
  elapsedMs: number;
  /** Settled jobs per runner host, most first. */
  byHost: [host: string, jobs: number][];
  /** The results directory. */
  resultsDir: string;
  /** Why the run ended early: the results directory could no longer take records (a full disk). */
  storeFailure?: string;
}

const log = logger("manager");
/** Fleet churn (runners joining, leaving holding jobs) is logged at a bounded rate. */
const joins = new RateLimitedLog(log, "runner join(s)", 20);
const requeues = new RateLimitedLog(log, "requeue(s) of lost runners' jobs", 20);
const leases = new RateLimitedLog(log, "lease(s) for lost runners", 20);

/**
 * Waits before a local runner that ended while the run goes on is started
 * again: the first wait, doubled after each end up to the longest. A runner
 * that worked this long before it ended starts again after the first wait.
 */
const LOCAL_RESTART = { initialMs: 500, maxMs: 30_000, workedMs: 10_000 };

/** The `peer` of a local worker's connection: `in-process:N` (so its host, for a binary node, is `in-process`). */
const LOCAL_PEER_PREFIX = "in-process:";

function describeResume(plan: ResumePlan, dir: string): void {
  if (plan.skipped === 0 && plan.gone === 0 && plan.unfinished === 0) return;
  const parts = [`${plan.skipped} settled earlier (not run again)`, `${plan.toRun} to run`];
  if (plan.unfinished > 0) parts.push(`${plan.unfinished} of them handed out before and never settled`);
  if (plan.gone > 0) parts.push(`${plan.gone} settled record(s) belong to jobs no longer in the list`);
  log.info("Resuming in {dir}: {parts}", { dir, parts: parts.join("; ") });
}

/**
 * Fast failures that were held as suspects when the last run stopped (the
 * black-hole rule's verdict was still pending): durable as attempt records,
 * acknowledged to their runners. Without the verdict they are the failures
 * they are: each settles its job now (a `job` record naming the same output),
 * unless `--retries` allows another try.
 */
async function settleHeldSuspects(plan: ResumePlan, results: ResultsStore, retries: number): Promise<ResumePlan> {
  let settled = 0;
  for (const [job, record] of plan.suspects) {
    if (plan.failures[job] <= retries) continue;
    const { type: _type, suspect: _suspect, size: _size, sha256: _sha, output: _output, files: _files, ...fields } =
      record;
    await results.commitFromAttempt(fields, record);
    plan.settled[job] = 1;
    settled++;
  }
  if (settled === 0) return plan;
  return {
    ...plan,
    skipped: plan.skipped + settled,
    failedEarlier: plan.failedEarlier + settled,
    toRun: plan.toRun - settled,
    unfinished: plan.unfinished - settled,
  };
}

/** What {@linkcode Manager.start} put together for the run to serve with. */
interface RunParts {
  readonly server: Server;
  readonly scheduler: Scheduler;
  readonly queue: JobQueue;
  readonly recorder: ResultRecorder;
  readonly watch: FleetWatch;
  readonly results: ResultsStore;
  readonly plan: ResumePlan;
  /** What `local` workers are served with. */
  readonly local: LocalSessionContext;
  /** What `local` text workers run their jobs through (opened by {@linkcode Manager.start}); closed at the end. */
  readonly localJobs: LocalJobs | undefined;
  /** Resolves with the reason once the results store could not take a record: the run ends now. */
  readonly storeFailed: Promise<string>;
  /** When serving began (`performance.now()`). */
  readonly started: number;
}

/**
 * Listens on the TCP (or TLS) port, and in memory for a local binary node:
 * plain, as nothing leaves the process, and still behind the secret if
 * there is one. Lets go of `claim` if it cannot.
 */
function listen(options: ManagerOptions, claim: ResultsDir): {
  listener: TransportListener;
  localListener: MemoryListener;
} {
  const hostname = options.hostname ?? "127.0.0.1";
  const localListener = new MemoryListener({ peerPrefix: LOCAL_PEER_PREFIX });
  // Only local workers: nothing listens but the memory listener, which only a local binary node dials.
  if (options.serveRunners === false) return { listener: localListener, localListener };
  try {
    let listener: TransportListener = options.tls === undefined
      ? listenTcp(hostname, options.port ?? DEFAULT_PORT)
      : listenTls(hostname, options.port ?? DEFAULT_PORT, options.tls);
    // Only a local binary node connects (text workers are served in-process, with no connection).
    if ((options.local ?? 0) > 0 && needsLocalNode(options.jobs)) listener = mergeListeners(listener, localListener);
    return { listener, localListener };
  } catch (err) {
    // Nothing was written yet: a results directory this start made goes again.
    claim.abandon();
    // A port in use keeps its type (the caller says which flag to change); any other failure names the address.
    if (err instanceof Deno.errors.AddrInUse) throw err;
    throw new Error(`cannot listen on ${hostname}:${options.port ?? DEFAULT_PORT}: ${(err as Error).message}`, {
      cause: err,
    });
  }
}

/** Whether `local` workers are one binary node (the list has task bundles), not in-process text workers. */
function needsLocalNode(jobs: JobList): boolean {
  return jobs.classes.some((c) => c.binaryOnly);
}

/**
 * Refuses a default results directory that holds another list's results
 * (`defaultResults`), before anything in it is moved or written; lets go
 * of it then.
 */
async function checkOwnList(options: ManagerOptions, claim: ResultsDir): Promise<void> {
  try {
    const owner = await firstRunSource(claim.path).catch((err) => {
      throw unusable(options.resultsDir, "read its journal", err);
    });
    checkSameList(owner, options.jobs.source, options.resultsDir);
  } catch (err) {
    claim.release();
    throw err;
  }
}

/** Moves earlier results aside (`fresh`) and opens the results; lets go of the directory and the port if it cannot. */
async function openResults(options: ManagerOptions, claim: ResultsDir, listener: TransportListener) {
  let current = claim;
  try {
    if (options.fresh) {
      const { dir, movedTo } = await claim.rotate();
      current = dir;
      if (movedTo !== undefined) {
        log.info("Earlier results in {dir} moved to {moved}", { dir: options.resultsDir, moved: movedTo });
      }
    }
    return await ResultsStore.open(current, { durable: options.durable });
  } catch (err) {
    current.release();
    listener.close();
    throw err;
  }
}

/**
 * `--resume-failed`: makes a `reopen` record durable for every job whose
 * last settlement failed or was lost, before anything is planned or handed
 * out. Returns the jobs reopened.
 */
async function reopenFailed(
  options: ManagerOptions,
  results: ResultsStore,
  keyOf: (job: number) => string,
): Promise<number[]> {
  const { jobs } = options;
  const reopen = planReopen(jobs.commands.length, results.previous, keyOf, (job) => jobs.lines[job]);
  await results.reopen(reopen.map((r) => r.record));
  return reopen.map((r) => r.job);
}

/** Slots of the job-key cache (a power of two): the jobs in flight, most recent first. */
const KEY_CACHE_SLOTS = 4096;

/**
 * A job's key is a SHA-256 of its command: made when the job goes out and
 * again when its result is recorded. A small cache by job number (bounded:
 * one slot per job modulo its size) makes the second one a look-up.
 */
function cachedKeys(keyOf: (job: number) => string): (job: number) => string {
  const jobsIn = new Int32Array(KEY_CACHE_SLOTS).fill(-1);
  const keys: string[] = new Array(KEY_CACHE_SLOTS).fill("");
  return (job) => {
    const slot = job & (KEY_CACHE_SLOTS - 1);
    if (jobsIn[slot] === job) return keys[slot];
    const key = keyOf(job);
    jobsIn[slot] = job;
    keys[slot] = key;
    return key;
  };
}

/** What an earlier run on the results directory settled (not run again), said and told. */
async function planRun(
  options: ManagerOptions,
  results: ResultsStore,
  keyOf: (job: number) => string,
  reopened: readonly number[] | undefined,
): Promise<ResumePlan> {
  const count = options.jobs.commands.length;
  let plan = planResume(count, results.previous, keyOf);
  plan = await settleHeldSuspects(plan, results, options.retries ?? 0);
  describeResume(plan, options.resultsDir);
  if (reopened !== undefined) options.onReopened?.(reopened, plan.toRun);
  if (options.onResumed !== undefined && plan.skipped > 0) {
    const before: number[] = [];
    for (let job = 0; job < count; job++) if (plan.settled[job] === 1) before.push(job);
    options.onResumed(before);
  }
  return plan;
}

/** Whether an earlier run settled a job (undefined when none did). */
function settledBefore(plan: ResumePlan): ((job: number) => boolean) | undefined {
  return plan.skipped === 0 ? undefined : (job) => plan.settled[job] === 1;
}

/** The scheduler's events as the run's logs, status and `onSettled`. */
function fleetLog(options: ManagerOptions, status: RunStatus): SchedulerEvents {
  const localNames = new Set(Array.from({ length: options.local ?? 0 }, (_, i) => `local-${i + 1}`));
  const nodesSeen = new Set<string>();
  return {
    onJoined: (link) => {
      status.joined(link);
      if (link.binary !== undefined) {
        // A binary node joins once per task: say so the first time only.
        const first = !nodesSeen.has(link.host);
        nodesSeen.add(link.host);
        const props = { host: link.host, modules: link.binary.modules.join(",") || "none" };
        if (first) joins.log("info", "Node {host} joined (modules: {modules})", props);
        else log.debug("Node {host} joined (modules: {modules})", props);
      } else {
        const own = link.name !== undefined && localNames.has(link.name) && link.peer.startsWith(LOCAL_PEER_PREFIX);
        const props = { host: link.host, peer: link.peer };
        if (own) log.debug("Runner {host} joined from {peer}", props);
        else joins.log("info", "Runner {host} joined from {peer}", props);
      }
    },
    onSettled: (job, code, link) => {
      status.settled(job, code, link);
      options.onSettled?.(job, code, link.host);
    },
    onAssigned: (job, link) => status.assigned(job, link),
    onRequeued: (requeued, link) =>
      requeues.log("warn", "{count} job(s) of runner {host} go back to the queue", {
        count: requeued.length,
        host: link.host,
      }),
    onLeased: (runnerId, leased, ms) =>
      leases.log("warn", "Runner {id} is gone holding {n} job(s); they wait {s}s for it to come back", {
        id: runnerId,
        n: leased.length,
        s: ms / 1000,
      }),
    onLifted: (host) => log.info("Quarantine of {host} is over", { host }),
  };
}

/**
 * The answer to a vico runner's extension hello. The lines it carries are
 * taken back only as hand-outs this directory issued to this runner, for
 * jobs still open; the rest are set aside (`drop`), but those whose result
 * this directory already recorded are forgotten (`have` as well): the
 * runner was stopped after the ack, before it forgot its copy.
 */
function answerHello(ledger: Ledger, o: {
  pulseSec: number;
  jobTimeoutMs: number | undefined;
  leaseMs: number;
  maxOutputBytes: number;
  settleBeforeNext: boolean;
}): ServerOptions["extensionAnswer"] {
  return (hello, holds) => {
    const carried: CarriedJob[] = [];
    const drop: number[] = [];
    const have: number[] = [];
    holds.forEach((line, i) => {
      const tag = heldTag(line, hello.proto);
      const known = tag !== undefined && ledger.knowsRun(tag.run);
      // Any job of the list, settled or not: an open hand-out is found at once.
      const job = known ? ledger.jobOfKey(tag.key) : undefined;
      if (hello.id !== undefined && job !== undefined && ledger.wants(hello.id, tag!.run, job, tag!.attempt)) {
        carried.push({ job, attempt: tag!.attempt });
        return;
      }
      drop.push(i);
      if (job !== undefined && ledger.hasResult(job, tag!.attempt)) have.push(i);
    });
    const answer: Extract<ServerHello, { kind: "ok" }> = {
      kind: "ok",
      pulse: o.pulseSec,
      timeoutMs: o.jobTimeoutMs,
      lease: Math.round(o.leaseMs / 1000),
      ...(hello.want.includes(TAG_FEATURE) ? { tag: 1 } : {}),
      // The pipelined text exchange needs tags: acks name what they acknowledge.
      ...(hello.proto === "text" && hello.want.includes(TAG_FEATURE) && hello.want.includes(PIPE_FEATURE)
        // --halt judges each result before that worker's next job: no job is asked for ahead of a running one.
        ? { pipe: 1, ...(o.settleBeforeNext ? { ahead: 0 } : {}) }
        : {}),
      // Runners keep jobs under it, so an over-limit job fails alone (125) instead of its runner being dropped.
      ...(hello.proto === "text" ? { maxOutput: o.maxOutputBytes } : {}),
      // A returning binary node asks whether to deliver the task it carried.
      ...(hello.proto === "binary" && holds.length > 0 ? { resume: carried.length > 0 ? 1 : 0 } : { drop, have }),
    };
    return { answer, held: carried };
  };
}

/**
 * Serves jobs until every one is settled, or until it is stopped.
 *
 * @example
 * ```ts ignore
 * const manager = await Manager.start({ jobs, resultsDir: "results", local: 4 });
 * const summary = await manager.finished;
 * ```
 */
export class Manager {
  /** Where the manager listens. */
  readonly address: { hostname: string; port: number };
  /** Resolves with the summary once every job is settled (or the run is stopped) and runners are gone. */
  readonly finished: Promise<RunSummary>;
  /** What the run is doing now (progress display, status server). */
  readonly status: RunStatus;
  /** Jobs settled per runner host in this run. */
  readonly settledByHost: () => ReadonlyMap<string, number>;
  /** Bytes of the results journal that hold durable records (`ResultsStore.durableLength`): readers here read no further. */
  readonly journalLength: () => number;
  readonly #localRunners = new Set<LocalWorker>();
  /** Resolves once the run is over: local runners that end are not started again. */
  readonly #over: Promise<void>;
  #endLocal!: () => void;
  readonly #options: ManagerOptions;
  readonly #localListener: MemoryListener;
  readonly #stopRequested: Promise<"graceful">;
  readonly #closeRequested: Promise<"now">;
  #requestStop!: () => void;
  /** No new jobs from now on (a stop takes effect at once, before the run notices it). */
  readonly #stopDispatch: () => void;
  #requestClose!: () => void;

  private constructor(
    setup: {
      options: ManagerOptions;
      address: { hostname: string; port: number };
      localListener: MemoryListener;
      status: RunStatus;
    },
    parts: RunParts,
  ) {
    this.status = setup.status;
    this.settledByHost = () => parts.scheduler.settledByHost;
    this.journalLength = () => parts.results.durableLength;
    this.address = setup.address;
    this.#options = setup.options;
    this.#localListener = setup.localListener;
    this.#stopRequested = new Promise((resolve) => (this.#requestStop = () => resolve("graceful")));
    this.#closeRequested = new Promise((resolve) => (this.#requestClose = () => resolve("now")));
    this.#over = new Promise((resolve) => (this.#endLocal = resolve));
    this.#stopDispatch = () => parts.scheduler.stopDispatch();
    // A stop asked for while it was starting holds before any job goes out (local workers start at once).
    const stopping = setup.options.stopSignal;
    if (stopping?.aborted) this.stop();
    else stopping?.addEventListener("abort", () => this.stop(), { once: true });
    this.finished = this.#run(parts);
  }

  /**
   * Claims the results directory (refused unless it is vico's; locked
   * against other managers), listens, moves earlier results aside
   * (`fresh`), opens the results and starts serving; a default results
   * directory (`defaultResults`) that holds another list's results is
   * refused right after the lock. Nothing is moved or removed unless every
   * earlier step succeeded.
   *
   * @throws {VicoError} a `ResultsDirError` when the results directory cannot be used
   *   (`another-list`: a default one that holds another list's results).
   */
  static async start(options: ManagerOptions): Promise<Manager> {
    if ((options.local ?? 0) > 0 && options.localWorkers === undefined) {
      throw new VicoError("USAGE", "local workers need a localWorkers factory (localRunners in mod.ts)");
    }
    // The local text workers' executor first: a spool directory that cannot
    // be made (a TMPDIR refused, say) stops the start with its reason before
    // anything else is done, rather than leaving a run with no worker.
    const local = (options.local ?? 0) > 0;
    if (local && needsLocalNode(options.jobs)) {
      await options.localWorkers!.nodeReady?.().catch((err) => {
        throw new Error(`cannot prepare the local node: ${(err as Error).message}`, { cause: err });
      });
    }
    const localJobs = local && !needsLocalNode(options.jobs)
      ? await options.localWorkers!.openJobs({ shell: options.shell }).catch((err) => {
        throw new Error(`cannot prepare the local workers: ${(err as Error).message}`, { cause: err });
      })
      : undefined;
    try {
      return await Manager.#start(options, localJobs);
    } catch (err) {
      await localJobs?.close();
      throw err;
    }
  }

  static async #start(options: ManagerOptions, localJobs: LocalJobs | undefined): Promise<Manager> {
    const limits: Limits = { ...DEFAULT_LIMITS, ...options.limits };
    const { jobs } = options;
    // Start-up order: lock, whose results they are, port, rotation, then the results themselves.
    const claim = await ResultsDir.claim(options.resultsDir, { durable: options.durable });
    if (options.defaultResults) await checkOwnList(options, claim);
    const { listener, localListener } = listen(options, claim);
    const results = await openResults(options, claim, listener);
    const keyOf = cachedKeys((job) => jobKey(identityOf(jobs, job), jobs.occurrences[job]));
    let reopened: number[] | undefined;
    if (options.rerunFailed) {
      try {
        reopened = await reopenFailed(options, results, keyOf);
      } catch (err) {
        listener.close();
        await results.close();
        throw unusable(options.resultsDir, "record the jobs to re-run in its journal", err);
      }
    }
    const plan = await planRun(options, results, keyOf, reopened);
    const queue = new JobQueue(jobs.commands.length, {
      classOf: jobs.classOf,
      classes: jobs.classes.length,
      settled: settledBefore(plan),
      // Jobs an identified runner carried when the last run stopped are leased to it.
      running: plan.carriedBy.size === 0 ? undefined : (job) => plan.carriedBy.has(job),
      // Attempt numbers continue where the journal left off.
      attemptsBefore: (job) => plan.attempts[job],
      failuresBefore: (job) => plan.failures[job],
    });
    // The commit authority: this run's identity, the earlier runs', and the
    // hand-outs to identified runners still open (their kept results are wanted).
    const run = crypto.randomUUID().replaceAll("-", "");
    const ledger = new Ledger(jobs.commands.length, run, results.previous.runIds, settledBefore(plan), keyOf);
    for (const [job, issued] of plan.issued) {
      for (const i of issued) ledger.issue(job, { attempt: i.attempt, runner: i.runner, run: i.run }, keyOf(job));
    }
    const leaseMs = options.leaseMs ?? 120_000;
    const status = new RunStatus({
      total: jobs.commands.length,
      source: jobs.source,
      resultsDir: options.resultsDir,
      lines: jobs.lines,
      nameOf: (job) => jobs.commands[job],
      skipped: plan.skipped,
      failedEarlier: plan.failedEarlier,
    });
    const scheduler = new Scheduler(queue, jobs.classes, fleetLog(options, status), {
      maxAttempts: options.maxAttempts,
      leaseMs,
      keyOf,
      ledger,
      timers: true,
    });
    // A results directory that can no longer take records (a full disk) ends the run: nothing could settle.
    let failStore!: (reason: string) => void;
    const storeFailed = new Promise<string>((resolve) => (failStore = resolve));
    results.onFailure = (err) => failStore(err instanceof Error ? err.message : String(err));
    const recorder = new ResultRecorder(scheduler, results, jobs, keyOf, {
      retries: options.retries,
      ...(options.onRecorded !== undefined ? { onRecorded: options.onRecorded } : {}),
      quarantine: new Quarantine(options.quarantine),
      onQuarantine: (host, until, reason) =>
        log.warn("Quarantined {host} for {s}s: {reason}; its failed jobs run elsewhere", {
          host,
          s: Math.round((until - Date.now()) / 1000),
          reason,
        }),
    });
    scheduler.listen({
      onLost: (job, reason, link) => {
        log.error("Job at line {line} is given up as lost: {reason}", { line: jobs.lines[job], reason });
        recorder.lost(job, reason, link).then(
          (recorded) => {
            if (!recorded) return; // a result beat it
            status.lost(job);
            options.onSettled?.(job, 255, link.host);
          },
          (err) => log.error("Could not record lost job: {err}", { err: (err as Error).message }),
        );
      },
    });
    const watch = new FleetWatch(jobs.classes, queue, scheduler);
    scheduler.listen({ onJoined: (link) => watch.onJoined(link) });
    if (plan.carriedBy.size > 0) scheduler.restoreLeases(plan.carriedBy);
    status.attach({
      get pending() {
        return queue.pending;
      },
      get running() {
        return queue.running;
      },
      get leased() {
        return scheduler.leased;
      },
      get stopping() {
        return scheduler.stopping;
      },
      links: () => scheduler.links(),
      jobsOf: (link) => scheduler.jobsOf(link as RunnerLink),
      protocolOf: (link) => ((link as RunnerLink).binary !== undefined ? "binary" : "text"),
    });
    const context: TextSessionContext = {
      scheduler,
      results,
      recorder,
      jobs,
      limits,
      transferIdleTimeoutMs: options.transferIdleTimeoutMs ?? 60_000,
      settleBeforeNext: options.settleBeforeNext ?? false,
      idleTimeoutMs: options.idleTimeoutMs ?? 300_000,
      jobTimeout: options.jobTimeoutMs !== undefined,
      run,
      keyOf,
      noteAssignment: (job, attempt, link) =>
        results.note({
          type: "assign",
          key: keyOf(job),
          runner: link.runnerId!,
          host: link.host,
          at: isoNow(),
          run,
          attempt,
        }),
    };
    const pulseSec = options.pulseSec ?? 10;
    const owners: OwnerSessionContext = {
      ...context,
      keyOf,
      pulseMs: pulseSec * 1000,
      defaultTimeoutMs: options.jobTimeoutMs,
    };
    // The run's record is durable before anything is served: a disk that
    // cannot take it (full, read-only) stops the start with its reason.
    try {
      await results.note({
        type: "run",
        id: run,
        started: new Date().toISOString(),
        source: jobs.source,
        jobs: jobs.commands.length,
        pid: Deno.pid,
      });
    } catch (err) {
      listener.close();
      await results.close();
      throw unusable(options.resultsDir, "record the run in its journal", err);
    }
    const server = new Server(listener, {
      text: (transport, reader, handshake, extension) =>
        new ManagerTextSession(transport, reader, context, handshake, extension),
      binary: (transport, reader, handshake, extension) =>
        new OwnerSession(transport, reader, owners, handshake, extension),
    }, {
      limits,
      handshakeTimeoutMs: options.handshakeTimeoutMs ?? 30_000,
      maxHandshaking: options.maxHandshaking ?? 256,
      maxConnections: options.maxConnections ?? 4096,
      secret: options.secret,
      tls: options.tls !== undefined,
      extensionAnswer: answerHello(ledger, {
        pulseSec,
        jobTimeoutMs: options.jobTimeoutMs,
        leaseMs,
        maxOutputBytes: limits.maxOutputBytes,
        settleBeforeNext: options.settleBeforeNext ?? false,
      }),
    });
    watch.announce();
    return new Manager(
      { options, address: listener.address, localListener, status },
      {
        server,
        scheduler,
        queue,
        recorder,
        watch,
        results,
        plan,
        local: { ...context, jobTimeoutMs: options.jobTimeoutMs },
        localJobs,
        storeFailed,
        started: performance.now(),
      },
    );
  }

  /** Serves until every job is settled, or the run is stopped; then ends the run and sums it up. */
  async #run(parts: RunParts): Promise<RunSummary> {
    const { server, scheduler, queue, recorder, watch, results, plan, started } = parts;
    const options = this.#options;
    const serving = server.serve();
    const locals = this.#startLocal(queue.done ? 0 : options.local ?? 0, parts.local, parts.localJobs);
    watch.start();
    const suspects = setInterval(() => recorder.expireSuspects().catch(() => {}), 1000);
    let storeFailure: string | undefined;
    const storeDown = parts.storeFailed.then((reason) => {
      storeFailure = reason;
      log.error(
        "Cannot record results in {dir}: {reason}; stopping now (what is recorded stays: run again on the same " +
          "results once the cause is fixed, and only the rest runs)",
        { dir: options.resultsDir, reason },
      );
      return "now" as const;
    });
    let how = await Promise.race([
      scheduler.done.then(() => "done" as const),
      this.#stopRequested,
      this.#closeRequested,
      storeDown,
    ]);
    if (how === "graceful") {
      // No new jobs; the ones out may still report, until the stop timeout
      // or a second request to end now.
      scheduler.stopDispatch();
      log.info("Stopping: no new jobs; waiting up to {s}s for {n} job(s) still running", {
        s: (options.stopTimeoutMs ?? 30_000) / 1000,
        n: queue.running,
      });
      const deadline = performance.now() + (options.stopTimeoutMs ?? 30_000);
      let now = false;
      this.#closeRequested.then(() => (now = true));
      storeDown.then(() => (now = true));
      while (queue.running > 0 && !now && performance.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      how = queue.done ? "done" : "now";
    }
    const elapsedMs = performance.now() - started;
    watch.stop();
    clearInterval(suspects);
    this.#endLocal();
    scheduler.close();
    if (how === "now") {
      for (const runner of this.#localRunners) runner.abort("the manager is stopping");
      await server.drain(0);
    } else {
      // Runners say their goodbyes; late joiners hear there is nothing left.
      await server.drain(options.drainTimeoutMs ?? 5000);
    }
    await serving;
    for (const end of await Promise.all(locals)) {
      if (end.kind === "failed" && how === "done") log.warn("Local runner ended: {reason}", { reason: end.reason });
    }
    // Every local worker has ended: the executor's spool goes.
    await parts.localJobs?.close();
    await results.close();
    this.status.finish();
    const failed = scheduler.failed + plan.failedEarlier;
    const unsettled = queue.size - queue.settled;
    return {
      jobs: queue.size,
      skipped: plan.skipped,
      succeeded: queue.settled - failed,
      failed,
      unsettled,
      stopped: unsettled > 0,
      elapsedMs,
      byHost: [...scheduler.settledByHost].sort((a, b) => b[1] - a[1]),
      resultsDir: options.resultsDir,
      ...(storeFailure === undefined ? {} : { storeFailure }),
    };
  }

  /**
   * Starts the `local` workers: text workers served in this process with no
   * connection ({@linkcode LocalSession}, one per worker, over one executor),
   * or, for a list of task bundles, one binary node connected in memory.
   */
  #startLocal(count: number, ctx: LocalSessionContext, executor: LocalJobs | undefined): Promise<LocalWorkerEnd>[] {
    if (count === 0) return [];
    const factory = this.#options.localWorkers!;
    if (needsLocalNode(ctx.jobs)) {
      // Task bundles need binary nodes. Running locally means this machine is
      // taken to offer every module the list asks for.
      return [this.#keepLocal("node", () =>
        factory.node({
          ...this.#local(),
          secret: this.#options.secret,
          workers: count,
          protocol: "binary",
          modules: [...new Set(ctx.jobs.classes.flatMap((c) => c.modules))],
          embedded: true,
        }))];
    }
    return Array.from({ length: count }, (_, i) =>
      this.#keepLocal(
        `runner local-${i + 1}`,
        () => new LocalSession(ctx, executor!, i + 1, LOCAL_PEER_PREFIX),
      ));
  }

  /** Where local workers connect: the listening address (for their messages) and the in-memory dial. */
  #local(): { hostname: string; port: number; dial: () => Transport } {
    return { ...this.address, dial: () => this.#localListener.connect() };
  }

  /**
   * Runs a local runner for as long as the run goes on. One that ends before
   * (dropped after a commit failed, say, on a full disk) is started again
   * with backoff, so the run carries on once the cause is gone; each new
   * reason is logged at WARN.
   */
  async #keepLocal(what: string, make: () => LocalWorker): Promise<LocalWorkerEnd> {
    let waitMs = LOCAL_RESTART.initialMs;
    let lastReason: string | undefined;
    let over = false;
    this.#over.then(() => (over = true));
    while (true) {
      const runner = make();
      this.#localRunners.add(runner);
      const started = performance.now();
      const end = await runner.run();
      this.#localRunners.delete(runner);
      if (over || end.kind === "finished" || end.kind === "stopped") return end;
      if (performance.now() - started >= LOCAL_RESTART.workedMs) waitMs = LOCAL_RESTART.initialMs;
      if (end.reason !== lastReason) {
        log.warn("Local {what} ended: {reason}; starting it again", { what, reason: end.reason });
      }
      lastReason = end.reason;
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([this.#over, new Promise((r) => (timer = setTimeout(r, waitMs)))]);
      clearTimeout(timer);
      if (over) return end;
      waitMs = Math.min(waitMs * 2, LOCAL_RESTART.maxMs);
    }
  }

  /**
   * Stops gracefully: no new jobs are handed out; jobs already out may still
   * report, up to the stop timeout; then the run ends. Unsettled jobs run on
   * a later start on the same results directory.
   */
  stop(): void {
    this.#stopDispatch();
    this.#requestStop();
  }

  /**
   * Ends the run now: stops listening, drops every runner (their jobs stay
   * unsettled and run on a later start on the same results directory) and
   * kills the jobs of local workers. After {@linkcode stop}, cuts its wait
   * short.
   */
  close(): void {
    this.#requestClose();
  }
}
