/**
 * A runner: connects to a manager, runs the jobs it hands out with N
 * workers, and reports their status and output.
 *
 * Text protocol: N long-lived workers (the draft's WorkerLoop) share one
 * connection at a time; a connection loop keeps it open. Without
 * `persist`, losing the manager kills the running jobs and ends the
 * runner. With `persist` the runner is a service: jobs keep running while
 * the manager is gone, their results wait in the state directory, and the
 * runner reconnects (exponential backoff with jitter), announces what it
 * holds, delivers what finished, and carries on; an empty queue only means
 * waiting for the next one.
 *
 * Binary protocol: N node sessions, one task each, joining again after each.
 *
 * @module
 */

import { join } from "node:path";
import { BufferedReader } from "../protocol/buffered_reader.ts";
import { DEFAULT_LIMITS, type Limits } from "../core/limits.ts";
import { connectTcp } from "../transport/conn_transport.ts";
import type { Transport } from "../transport/transport.ts";
import { logger } from "../util/log.ts";
import { type HeldTask, NodeSession } from "./binary/node_session.ts";
import { TaskDir } from "./binary/task_dir.ts";
import { OutputSpool } from "./exec/output_spool.ts";
import { runProcess, SEQ_VARIABLE, shellArgv, SLOT_VARIABLE, STATUS_RUNNER_FAILURE } from "./exec/process_runner.ts";
import { takeOverState } from "./exec/job_reaper.ts";
import {
  defaultStateDir,
  type LifeLedger,
  MAX_DELIVERY_FAILURES,
  RunnerState,
  type StoredResult,
  type Streamable,
} from "./service/runner_state.ts";
import { type ConnectionEnd, type HandedJob, RunnerTextClient, STOPPED } from "./text/text_client.ts";
import {
  HELD_TASK_PREFIX,
  isAuthRefusal,
  PIPE_FEATURE,
  RUNNER_SILENT_PULSES,
  TAG_FEATURE,
} from "../protocol/vico_extension.ts";
import type { SharedSecret } from "../protocol/auth.ts";
import { VicoError } from "../core/errors.ts";
import { sayHello } from "./connect/extension_hello.ts";
import type { RunAs } from "./exec/run_as.ts";
import type { JobCgroups } from "./exec/job_cgroup.ts";

/** Options for {@linkcode Runner}. */
export interface RunnerOptions {
  /** Manager host. */
  hostname: string;
  /** Manager port. */
  port: number;
  /** Jobs run at once. */
  workers: number;
  /** Name announced to the manager. @default {Deno.hostname()} */
  name?: string;
  /** Where outputs spill to disk. @default {a fresh temporary directory} */
  spoolDir?: string;
  /** Wire limits. */
  limits?: Partial<Limits>;
  /** Grace between SIGTERM and SIGKILL when jobs must end. @default {2000} */
  killGraceMs?: number;
  /** Protocol to speak. @default {"text"} */
  protocol?: "text" | "binary";
  /** Binary: modules announced in Join. */
  modules?: readonly string[];
  /** Binary: where per-task directories are made. @default {a fresh temporary directory} */
  workDir?: string;
  /** Binary: keep task directories after their session (debugging). */
  keepTaskDirs?: boolean;
  /** Keep running across manager restarts and empty queues; keep jobs running while the manager is gone. */
  persist?: boolean;
  /** Where a persistent runner keeps its id and undelivered results. @default {defaultStateDir()} */
  stateDir?: string;
  /** Speak the vico extension (falls back to the plain protocol for a manager without it). @default {true} */
  extension?: boolean;
  /** Reconnect backoff, first and longest wait in milliseconds. @default {{ initialMs: 500, maxMs: 30000 }} */
  backoff?: { initialMs: number; maxMs: number };
  /** Runs inside a manager process (`--local`): connection events are logged at debug level. */
  embedded?: boolean;
  /** How to connect (tests and TLS plug in here). @default {TCP} */
  connect?: (hostname: string, port: number) => Promise<Transport>;
  /** Authenticate with this secret, and require the manager to; never fall back to plain. */
  secret?: SharedSecret;
  /** Run jobs as this user (the runner must be root). */
  runAs?: RunAs;
  /** Run each job in a cgroup leaf with these per-job limits (`--job-memory`, `--job-cpus`). */
  jobCgroups?: JobCgroups;
  /**
   * Longest wait for a connection's opening: from the vico extension's hello
   * to KOMPRENAS (text), or to the manager's answer to the hello (binary).
   * @default {HANDSHAKE_TIMEOUT_MS}
   */
  handshakeTimeoutMs?: number;
  /** Worker `i` (from 0) exports `VICO_SLOT` = this + i + 1 to its jobs. @default {0} */
  slotBase?: number;
  /** The shell jobs run under (`sh -c` compatible). @default {"/bin/sh"} */
  shell?: string;
  /** Called when the runner has joined its manager (authenticated), and when it loses it or cannot reach it. */
  onConnection?: (activity: RunnerActivity) => void;
}

/** What a runner is doing (for a service manager's status line). */
export interface RunnerActivity {
  /** Joined to the manager (and authenticated, with a secret). */
  readonly connected: boolean;
  /** Jobs (binary: tasks) running now, including those kept while the manager is away. */
  readonly running: number;
  /** Jobs (binary: tasks) reported to a manager since the start. */
  readonly done: number;
  /** Why the manager cannot be reached, while retrying. */
  readonly problem?: string;
}

/** How a runner ended. */
export type RunnerEnd =
  | { readonly kind: "finished"; readonly jobs: number }
  | { readonly kind: "stopped"; readonly jobs: number }
  /** The manager refused it; `auth`: because it did not authenticate (wrong secret or none). */
  | { readonly kind: "refused"; readonly reason: string; readonly auth: boolean }
  /** The manager could not be verified (TLS certificate, secret): nothing was sent or run. */
  | { readonly kind: "untrusted"; readonly reason: string }
  | { readonly kind: "failed"; readonly reason: string; readonly jobs: number };

interface Finished {
  job: HandedJob;
  status: number;
  output: Streamable & { dispose(): Promise<void> };
  /** The runner itself ended the job (its --timeout, or its memory limit). */
  endedByRunner?: boolean;
  /** It was its --timeout. */
  timedOut?: boolean;
}

/**
 * How long a runner waits for a manager to complete a connection's opening
 * before it takes the connection for failed: an endpoint that accepts TCP
 * and never answers does not hold a runner for ever.
 */
export const HANDSHAKE_TIMEOUT_MS = 30_000;

/** A connection's opening under way: cut by its deadline, or by a stop with nothing running. */
interface Opening {
  /** Why the opening was cut short, once it was. */
  readonly cut?: { readonly stopped: boolean; readonly reason: string };
  /** The opening is over (the timer stops). */
  done(): void;
}

/** A short output held in memory: the note a runner sends in place of a job's output. */
function noteOutput(text: string): Streamable {
  const bytes = new TextEncoder().encode(text);
  return { size: bytes.length, pipeTo: (sink) => sink(bytes) };
}

/** Exit statuses of a job killed by SIGHUP, SIGINT or SIGTERM. */
const STOP_SIGNAL_STATUSES: ReadonlySet<number> = new Set([128 + 1, 128 + 2, 128 + 15]);

const log = logger("runner");

/**
 * Runs jobs for a manager until it says there are no more (or forever, with
 * `persist`).
 *
 * @example
 * ```ts ignore
 * const end = await new Runner({ hostname: "127.0.0.1", port: 7707, workers: 4 }).run();
 * if (end.kind !== "finished") console.error(end.kind);
 * ```
 */
export class Runner {
  readonly #options: RunnerOptions;
  readonly #limits: Limits;
  readonly #jobsAbort = new AbortController();
  readonly #nodeSessions = new Set<NodeSession>();
  /** Persist, binary: tasks kept across a lost owner, and whether each has finished or is being delivered. */
  readonly #heldTasks = new Map<HeldTask, { finished: boolean; claimed: boolean }>();
  #stopping = false;
  #wake: () => void = () => {};
  #wakeup: Promise<void> = Promise.resolve();
  // Text mode.
  #client: RunnerTextClient | undefined;
  #clientWaiters: (() => void)[] = [];
  #done: RunnerEnd | undefined;
  #jobTimeoutMs: number | undefined;
  /** The largest output the manager of the live connection takes (its `maxout=`), if it said. */
  #managerMaxOutput: number | undefined;
  readonly #running = new Map<number, HandedJob>();
  /** Tags of running jobs a manager said it does not want: their results are set aside, not delivered. */
  readonly #unwanted = new Set<string>();
  #jobsDone = 0;
  /** Jobs handed to this runner since the start (text). */
  #jobsStarted = 0;
  /** Where running jobs are written down (`--persist`). */
  #ledger: LifeLedger | undefined;
  #connected = false;
  #problem: string | undefined;
  /** Pipelined results sent and not acknowledged yet: each settles once acked, or once kept (persist). */
  readonly #unacked = new Set<Promise<void>>();
  /** Openings under way, each with the function that cuts it short. */
  readonly #openings = new Set<(stopped: boolean) => void>();

  /** @param options Where to connect and how many jobs to run at once. */
  constructor(options: RunnerOptions) {
    this.#options = options;
    this.#limits = { ...DEFAULT_LIMITS, ...options.limits };
    this.#newWakeup();
  }

  /** Serves until the manager has no more jobs (or until stopped). Never rejects. */
  async run(): Promise<RunnerEnd> {
    if (this.#stopping) return { kind: "stopped", jobs: 0 };
    if (this.#options.protocol === "binary") return await this.#runNodes();
    return await this.#runText();
  }

  /** What the runner is doing now. */
  get activity(): RunnerActivity {
    let running = this.#running.size;
    for (const s of this.#nodeSessions) if (!["Joining", "Idle", "Closed"].includes(s.state)) running++;
    for (const entry of this.#heldTasks.values()) if (!entry.finished) running++;
    return { connected: this.#connected, running, done: this.#jobsDone, problem: this.#problem };
  }

  #connection(connected: boolean, problem?: string): void {
    if (connected === this.#connected && problem === this.#problem) return;
    this.#connected = connected;
    this.#problem = problem;
    this.#options.onConnection?.(this.activity);
  }

  /** Takes no new jobs; running ones finish and are reported (or kept, while disconnected). */
  stop(): void {
    this.#stopping = true;
    this.#client?.stop();
    this.#wake();
    // Nothing to finish: an opening still waiting for its manager ends now.
    if (this.activity.running === 0) { for (const cut of [...this.#openings]) cut(true); }
    // Binary sessions waiting for a task have nothing to finish.
    for (const session of this.#nodeSessions) if (session.state === "Joining") session.abort();
  }

  /** Kills running jobs and drops the connection. */
  abort(reason: string): void {
    this.#stopping = true;
    this.#jobsAbort.abort();
    this.#client?.abort(reason);
    this.#finish({ kind: "stopped", jobs: this.#jobsDone });
    for (const session of this.#nodeSessions) session.abort();
  }

  /**
   * Starts the clock on a connection's opening: past the handshake limit,
   * or on a stop with nothing running, the transport is closed and `cut`
   * says why.
   */
  #opening(transport: Transport): Opening {
    const ms = this.#options.handshakeTimeoutMs ?? HANDSHAKE_TIMEOUT_MS;
    const { hostname, port } = this.#options;
    let cut: Opening["cut"];
    const end = (stopped: boolean) => {
      if (cut !== undefined) return;
      cut = stopped ? { stopped, reason: "Stopped before the manager answered" } : {
        stopped,
        reason: `The manager at ${hostname}:${port} accepted the connection but did not complete the handshake ` +
          `within ${ms / 1000}s`,
      };
      done();
      transport.close();
    };
    const timer = setTimeout(() => end(false), ms);
    const done = () => {
      clearTimeout(timer);
      this.#openings.delete(end);
    };
    this.#openings.add(end);
    return {
      get cut() {
        return cut;
      },
      done,
    };
  }

  #newWakeup(): void {
    this.#wakeup = new Promise((resolve) => (this.#wake = resolve));
  }

  /** Sleeps up to `ms`, or until stop/abort. */
  /** Dials the manager; a failure comes back as its reason, and whether the manager could not be trusted. */
  async #dial(): Promise<{ transport: Transport } | { untrusted: boolean; reason: string }> {
    const { hostname, port } = this.#options;
    try {
      return { transport: await (this.#options.connect ?? connectTcp)(hostname, port) };
    } catch (err) {
      const untrusted = err instanceof VicoError && err.code === "AUTH_FAILED";
      const message = (err as Error).message;
      return {
        untrusted,
        reason: untrusted ? message : `Cannot connect to the manager at ${hostname}:${port}: ${message}`,
      };
    }
  }

  /**
   * Reconnection backoff: `retry(why)` logs `why` once per new reason and
   * waits, doubling up to the longest wait; `reset()` after a success;
   * `down` is the reason of the failure being retried, if any.
   */
  #backoff(
    prefix: string,
  ): { retry(why: string): Promise<void>; reset(): void; readonly maxMs: number; readonly down?: string } {
    const { initialMs, maxMs } = this.#options.backoff ?? { initialMs: 500, maxMs: 30_000 };
    let wait = initialMs;
    let down: string | undefined;
    return {
      maxMs,
      get down() {
        return down;
      },
      retry: async (why) => {
        if (down !== why) log.warn("{prefix}{why}; retrying", { prefix, why });
        this.#connection(false, why);
        down = why;
        // Full jitter keeps a fleet from reconnecting in lockstep.
        await this.#sleep(wait / 2 + Math.random() * wait / 2);
        wait = Math.min(wait * 2, maxMs);
      },
      reset: () => {
        wait = initialMs;
        down = undefined;
      },
    };
  }

  async #sleep(ms: number): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([this.#wakeup, new Promise((r) => (timer = setTimeout(r, ms)))]);
    clearTimeout(timer);
  }

  // ---------------------------------------------------------------------------
  // Text protocol
  // ---------------------------------------------------------------------------

  async #runText(): Promise<RunnerEnd> {
    const persist = this.#options.persist ?? false;
    let state: RunnerState | undefined;
    let spoolDir: string;
    try {
      if (persist) state = await this.#openState();
      spoolDir = this.#options.spoolDir ?? await Deno.makeTempDir({ prefix: "vico-runner-" });
    } catch (err) {
      return { kind: "failed", reason: `Cannot prepare the runner: ${(err as Error).message}`, jobs: 0 };
    }
    try {
      const workers = Array.from({ length: this.#options.workers }, (_, i) => this.#textWorker(i, spoolDir, state));
      await this.#connectionLoop(state);
      await Promise.all(workers);
      await Promise.all([...this.#unacked]);
      return this.#done!;
    } finally {
      await this.#ledger?.close();
      if (this.#options.spoolDir === undefined) await Deno.remove(spoolDir, { recursive: true }).catch(() => {});
    }
  }

  /**
   * Opens the state directory (`--persist`): first ends what an earlier
   * life of this runner left running there, then records this life's jobs.
   */
  async #openState(): Promise<RunnerState> {
    const state = await RunnerState.open(this.#options.stateDir ?? defaultStateDir());
    this.#ledger = await takeOverState(state, this.#options.killGraceMs ?? 2000);
    return state;
  }

  #finish(end: RunnerEnd): void {
    this.#done ??= end;
    for (const w of this.#clientWaiters.splice(0)) w();
    this.#wake();
  }

  /** The live client, waiting for one if there is none; undefined once the runner is done. */
  async #nextClient(): Promise<RunnerTextClient | undefined> {
    while (this.#done === undefined) {
      if (this.#client !== undefined && !this.#client.closed) return this.#client;
      await new Promise<void>((resolve) => this.#clientWaiters.push(resolve));
    }
    return undefined;
  }

  async #connectionLoop(state: RunnerState | undefined): Promise<void> {
    const persist = state !== undefined;
    const { hostname, port } = this.#options;
    const backoff = this.#backoff("");
    const retry = backoff.retry;
    let extension = this.#options.extension ?? true;
    let everConnected = false;
    const quietly = this.#options.embedded ? "debug" : "info";
    while (this.#done === undefined) {
      // Stopping waits for running jobs only: kept results are on disk and go
      // out on the next start.
      if (this.#stopping && this.#running.size === 0) {
        this.#finish({ kind: "stopped", jobs: this.#jobsDone });
        break;
      }
      const dialed = await this.#dial();
      if (!("transport" in dialed)) {
        const { untrusted, reason } = dialed;
        if (!persist) {
          this.#finish(untrusted ? { kind: "untrusted", reason } : { kind: "failed", reason, jobs: this.#jobsDone });
          break;
        }
        await retry(reason);
        continue;
      }
      const transport = dialed.transport;
      const reader = new BufferedReader(transport, { maxLineBytes: this.#limits.maxLineBytes });
      let negotiated: { pulseSec: number; timeoutMs?: number; tagged: boolean; pipe: boolean } | undefined;
      const opening = this.#opening(transport);
      // The opening was cut short (its time limit, or a stop): a failed connection, or the end.
      const cutShort = async (): Promise<"break" | "continue" | undefined> => {
        const cut = opening.cut;
        if (cut === undefined) return undefined;
        if (cut.stopped || !persist) {
          this.#finish(
            cut.stopped
              ? { kind: "stopped", jobs: this.#jobsDone }
              : { kind: "failed", reason: cut.reason, jobs: this.#jobsDone },
          );
          return "break";
        }
        await retry(cut.reason);
        return "continue";
      };
      // Results the last connection left unacknowledged are kept first (persist), so that they are held lines now.
      await Promise.all([...this.#unacked]);
      if (extension) {
        // Held lines name each hand-out by its tag; untagged ones (from a
        // manager without tags) cannot be bound to a hand-out and are dropped.
        const running = [...this.#running.values()].filter((j) => !this.#unwanted.has(j.tag ?? ""));
        const kept = state ? await state.pending() : [];
        const held: { tag?: string; command: string; kept?: StoredResult }[] = [
          ...running,
          ...kept.map((r) => ({ tag: r.tag, command: r.command, kept: r })),
        ];
        const holds = held.map((h) => h.tag === undefined ? h.command : `${h.tag} ${h.command}`);
        const hello = await sayHello(transport, reader, {
          proto: "text",
          id: state?.id,
          want: ["pulse", TAG_FEATURE, PIPE_FEATURE],
          holds,
          secret: this.#options.secret,
          manager: `${hostname}:${port}`,
        });
        const cut = await cutShort();
        if (cut === "break") break;
        if (cut === "continue") continue;
        if (hello.kind !== "ok") {
          opening.done();
          transport.close();
        }
        if (hello.kind === "noExtension") {
          // A manager that only knows the drafts: connect again without it.
          log.info("The manager does not speak the vico extension; using the plain protocol");
          extension = false;
          continue;
        }
        if (hello.kind === "untrusted" || hello.kind === "refused") {
          const reason = hello.kind === "refused" ? `Manager refused this runner: ${hello.reason}` : hello.reason;
          if (!persist) {
            this.#finish(
              hello.kind === "untrusted"
                ? { kind: "untrusted", reason }
                : { kind: "refused", reason, auth: hello.auth },
            );
            break;
          }
          await retry(reason);
          continue;
        }
        if (hello.kind === "failed" || hello.kind === "closed") {
          if (!persist) {
            // Closed without a word after jobs: the manager's run is over.
            this.#finish(
              hello.kind === "closed" && this.#jobsDone > 0
                ? { kind: "finished", jobs: this.#jobsDone }
                : { kind: "failed", reason: hello.reason, jobs: this.#jobsDone },
            );
            break;
          }
          await retry(hello.reason);
          continue;
        }
        negotiated = {
          pulseSec: hello.answer.pulse ?? 0,
          timeoutMs: hello.answer.timeoutMs,
          tagged: hello.answer.tag === 1,
          pipe: hello.answer.pipe === 1,
        };
        // What this manager does not want is set aside: kept results now,
        // running jobs once they finish. It never holds up other work.
        for (const i of hello.answer.drop ?? []) {
          const h = held[i];
          if (h === undefined) continue;
          if (h.kept !== undefined) await state!.setAside(h.kept, "the manager did not take it back");
          else if (h.tag !== undefined) this.#unwanted.add(h.tag);
          else this.#unwanted.add(h.command);
        }
        this.#managerMaxOutput = hello.answer.maxOutput;
      } else {
        this.#managerMaxOutput = undefined;
      }
      const client = new RunnerTextClient(transport, reader, {
        name: this.#options.name ?? Deno.hostname(),
        workers: this.#options.workers,
        extension: negotiated,
      });
      const opened = await client.open();
      opening.done();
      const cut = await cutShort();
      if (cut === "break") break;
      if (cut === "continue") continue;
      if (opened.kind === "refused") {
        this.#finish({ kind: "refused", reason: opened.reason, auth: false });
        break;
      }
      if (opened.kind === "failed") {
        if (!persist) {
          this.#finish({ kind: "failed", reason: opened.reason, jobs: this.#jobsDone });
          break;
        }
        await retry(opened.reason);
        continue;
      }
      log[everConnected && backoff.down === undefined ? "debug" : quietly](
        "Connected to {host}:{port} as {name} with {workers} worker(s){ext}",
        {
          host: hostname,
          port,
          name: this.#options.name ?? Deno.hostname(),
          workers: this.#options.workers,
          ext: opened.extension
            ? ` (pulse ${opened.pulseSec}s${state ? `, id ${state.id}` : ""}${opened.pipe ? ", pipelined" : ""})`
            : "",
        },
      );
      everConnected = true;
      this.#connection(true);
      // The backoff starts again only after this connection did useful work
      // (delivered a result or ran a job): connecting alone is not enough,
      // or a delivery that keeps failing would be retried at the first wait.
      const before = { done: this.#jobsDone, started: this.#jobsStarted };
      this.#jobTimeoutMs = opened.timeoutMs;
      // Results kept while the manager was away go first: REZULTO before PETO.
      if (state !== undefined) {
        for (const stored of await state.pending()) {
          if (!await this.#deliverKept(client, stored, state)) break;
        }
      }
      this.#client = client;
      for (const w of this.#clientWaiters.splice(0)) w();
      if (this.#stopping) client.stop();
      const end: ConnectionEnd = await client.ended;
      await client.finished();
      this.#client = undefined;
      if (this.#jobsDone > before.done || this.#jobsStarted > before.started) backoff.reset();
      this.#connection(false, end.kind === "goodbye" ? "it has no more jobs" : undefined);
      if (end.kind === "goodbye") {
        if (!persist || this.#stopping) {
          this.#finish({ kind: "finished", jobs: this.#jobsDone });
          break;
        }
        log[quietly]("The manager has no more jobs; waiting for more");
        await this.#sleep(backoff.maxMs);
        continue;
      }
      if (end.kind === "stopped") {
        this.#finish({ kind: "stopped", jobs: this.#jobsDone });
        break;
      }
      if (!persist) {
        // Without --persist, jobs do not outlive their manager's connection.
        this.#jobsAbort.abort();
        this.#finish({ kind: "failed", reason: end.reason, jobs: this.#jobsDone });
        break;
      }
      await retry(`Lost the manager: ${end.reason}; ${this.#running.size} job(s) keep running`);
    }
    for (const w of this.#clientWaiters.splice(0)) w();
  }

  /** One worker: the draft's WorkerLoop, across connections. */
  async #textWorker(id: number, spoolDir: string, state: RunnerState | undefined): Promise<void> {
    let finished: Finished | undefined;
    while (true) {
      if (finished !== undefined) {
        finished = await this.#deliver(finished, state);
        continue;
      }
      const client = await this.#nextClient();
      if (client === undefined) return;
      if (this.#stopping || client.finoReceived) {
        await client.arriveWaitClose();
        continue;
      }
      let job: HandedJob | null;
      try {
        job = await client.request();
      } catch (err) {
        if (err === STOPPED) await client.arriveWaitClose();
        continue;
      }
      if (job === null) {
        await client.arriveWaitClose();
        continue;
      }
      log.debug("Worker {id} runs {job}", { id, job: job.command });
      this.#jobsStarted++;
      this.#running.set(id, job);
      try {
        const slot = (this.#options.slotBase ?? 0) + id + 1;
        finished = { job, ...await this.#execute(job.command, spoolDir, slot, job.seq) };
      } finally {
        this.#running.delete(id);
      }
      if (
        STOP_SIGNAL_STATUSES.has(finished.status) && !finished.endedByRunner && await this.#stopSignalArrives()
      ) {
        // Not a result: the signal that stops the runner reached the job too
        // (Slurm signals every process of a step, a terminal its process
        // group). Leaving it unreported, the manager runs it again once this
        // runner's connection closes.
        log.warn(
          "Job {job} was ended by the signal that stops this runner (exit {status}); it is not reported, " +
            "so the manager runs it again",
          { job: job.command, status: finished.status },
        );
        await finished.output.dispose();
        finished = undefined;
      }
    }
  }

  /**
   * For a job that died of SIGHUP/SIGINT/SIGTERM from outside: whether this
   * runner is being stopped too. Its own signal handler may run just after
   * the job's end is seen, so this waits a moment for it.
   */
  async #stopSignalArrives(): Promise<boolean> {
    for (let waited = 0; !this.#stopping && waited < 500; waited += 50) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    return this.#stopping;
  }

  /**
   * Delivers a result kept in the state directory; false when the
   * connection failed (try the rest on the next one). A result larger than
   * the manager takes is set aside and reported as status 125 with a note; one
   * whose delivery was refused or dropped {@linkcode MAX_DELIVERY_FAILURES}
   * times in a row is set aside, so it never blocks other work.
   */
  async #deliverKept(client: RunnerTextClient, stored: StoredResult, state: RunnerState): Promise<boolean> {
    const limit = this.#managerMaxOutput;
    if (limit !== undefined && stored.size > limit) {
      let note: string;
      try {
        const where = await state.setAside(
          stored,
          `its output of ${stored.size} bytes exceeds the manager's limit of ${limit} bytes`,
        );
        note = `vico runner: Output of ${stored.size} bytes exceeds the manager's limit of ${limit} bytes; ` +
          `it was not sent (set aside on the runner in ${where})\n`;
      } catch (err) {
        log.error("Could not set aside the kept result of {job}: {err}", {
          job: stored.command,
          err: (err as Error).message,
        });
        return true;
      }
      try {
        await client.report(stored, STATUS_RUNNER_FAILURE, noteOutput(note));
        this.#jobsDone++;
        return true;
      } catch {
        return false;
      }
    }
    try {
      await client.report(stored, stored.status, stored, stored.timedOut);
    } catch {
      try {
        const failures = await state.noteFailedDelivery(stored);
        if (failures >= MAX_DELIVERY_FAILURES) {
          await state.setAside(stored, `its delivery was refused or dropped ${failures} times in a row`);
        }
      } catch (err) {
        log.error("Could not count a failed delivery of {job}: {err}", {
          job: stored.command,
          err: (err as Error).message,
        });
      }
      return false;
    }
    await stored.dispose();
    this.#jobsDone++;
    return true;
  }

  /** Reports a finished job on the live connection, or keeps it (persist); returns what is still to deliver. */
  async #deliver(result: Finished, state: RunnerState | undefined): Promise<Finished | undefined> {
    const client = this.#client;
    const unwanted = this.#unwanted.delete(result.job.tag ?? result.job.command);
    if (unwanted && state !== undefined) {
      await state.store(result.job, result.status, result.output, result.timedOut).then(
        async (kept) => await state.setAside(kept, "no manager wants it (it was handed out by another run)"),
        (err) => log.error("Could not keep the result of {job}: {err}", { job: result.job.command, err: err.message }),
      );
      await result.output.dispose();
      return undefined;
    }
    const limit = this.#managerMaxOutput;
    if (client !== undefined && !client.closed && limit !== undefined && result.output.size > limit) {
      // It ran under an earlier manager's larger limit (--persist): this one
      // would drop the runner for it. Kept, it goes out as 125 and a note.
      if (state === undefined) {
        const note = `vico runner: Output of ${result.output.size} bytes exceeds the manager's limit of ${limit} ` +
          `bytes; it was not sent\n`;
        await result.output.dispose();
        return {
          job: result.job,
          status: STATUS_RUNNER_FAILURE,
          output: { ...noteOutput(note), dispose: async () => {} },
        };
      }
      try {
        const kept = await state.store(result.job, result.status, result.output, result.timedOut);
        await this.#deliverKept(client, kept, state);
      } catch (err) {
        log.error("Could not keep the result of {job}: {err}", {
          job: result.job.command,
          err: (err as Error).message,
        });
      }
      await result.output.dispose();
      return undefined;
    }
    if (client !== undefined && !client.closed && client.pipelined && result.job.tag !== undefined) {
      // Pipelined: sent whole, and the worker asks for its next job at once; the ack settles it later.
      try {
        const { acked } = await client.sendResult(result.job, result.status, result.output, result.timedOut);
        const settled = acked.then(
          async () => {
            this.#jobsDone++;
            await result.output.dispose();
          },
          () => this.#keep(result, state),
        );
        this.#unacked.add(settled);
        settled.then(() => this.#unacked.delete(settled));
        return undefined;
      } catch {
        // Lost before it went out whole: keep it (persist) or let the manager run it again.
      }
    } else if (client !== undefined && !client.closed) {
      try {
        await client.report(result.job, result.status, result.output, result.timedOut);
        this.#jobsDone++;
        await result.output.dispose();
        return undefined;
      } catch {
        // Lost mid-report: keep it (persist) or let the manager run it again.
      }
    }
    await this.#keep(result, state);
    return undefined;
  }

  /** A result no manager took: kept in the state directory until one does (persist), else dropped. */
  async #keep(result: Finished, state: RunnerState | undefined): Promise<void> {
    if (state !== undefined) {
      try {
        await state.store(result.job, result.status, result.output, result.timedOut);
        log.info("Kept the result of {job} until a manager takes it", { job: result.job.command });
      } catch (err) {
        log.error("Could not keep the result of {job}: {err}", {
          job: result.job.command,
          err: (err as Error).message,
        });
      }
    }
    await result.output.dispose();
  }

  /** The output limit a job runs under: the smaller of this runner's and its manager's. */
  get #maxOutputBytes(): number {
    return Math.min(this.#limits.maxOutputBytes, this.#managerMaxOutput ?? Infinity);
  }

  async #execute(command: string, spoolDir: string, slot: number, seq?: number): Promise<Omit<Finished, "job">> {
    const output = new OutputSpool({ dir: spoolDir, maxBytes: this.#maxOutputBytes });
    try {
      // The job writes its output file itself (the runner touches no byte of it while it runs).
      const outcome = await runProcess(shellArgv(command, this.#options.shell), {
        env: { [SLOT_VARIABLE]: String(slot), ...(seq === undefined ? {} : { [SEQ_VARIABLE]: String(seq) }) },
        stderrOnStdout: true,
        outputFile: output.reserveFile(),
        maxOutputBytes: this.#maxOutputBytes,
        signal: this.#jobsAbort.signal,
        killGraceMs: this.#options.killGraceMs,
        timeoutMs: this.#jobTimeoutMs,
        runAs: this.#options.runAs,
        cgroups: this.#options.jobCgroups,
        ledger: this.#ledger,
      });
      output.adopt(outcome.outputBytes ?? 0);
      if (outcome.memoryExceeded) {
        log.warn("Job {job} {note}", { job: command, note: this.#options.jobCgroups!.memoryNote });
      }
      if (outcome.outputAbandoned) {
        log.warn("Job {job} has ended, but a process that left its process group still holds its output: not read", {
          job: command,
        });
      }
      if (outcome.timedOut) {
        log.warn("Job {job} ran past its {s}s limit and was stopped", { job: command, s: this.#jobTimeoutMs! / 1000 });
      }
      return {
        status: outcome.status,
        output,
        endedByRunner: outcome.timedOut || outcome.memoryExceeded,
        timedOut: outcome.timedOut ?? false,
      };
    } catch (err) {
      // The job's output could not be kept (over the limit, or the spool
      // failed): the job fails on its own, with a note saying why.
      await output.dispose();
      const reason = err instanceof Error ? err.message : String(err);
      log.warn("Job {job} failed in the runner: {reason}", { job: command, reason });
      const note = new OutputSpool({ dir: spoolDir });
      await note.write(new TextEncoder().encode(`vico runner: ${reason}; the job was killed\n`));
      return { status: STATUS_RUNNER_FAILURE, output: note };
    }
  }

  // ---------------------------------------------------------------------------
  // Binary protocol
  // ---------------------------------------------------------------------------

  /** N node sessions, each one task at a time, joining again after each. */
  async #runNodes(): Promise<RunnerEnd> {
    const persist = this.#options.persist ?? false;
    let state: RunnerState | undefined;
    let workDir: string;
    try {
      if (persist) state = await this.#openState();
      // A persistent node's task directories must outlive the process.
      workDir = this.#options.workDir ??
        (state ? join(state.dir, "work") : await Deno.makeTempDir({ prefix: "vico-node-" }));
    } catch (err) {
      return { kind: "failed", reason: `Cannot prepare the node: ${(err as Error).message}`, jobs: 0 };
    }
    for (const kept of state ? await state.heldTasks() : []) {
      this.#heldTasks.set({
        key: kept.key,
        rets: kept.rets,
        dir: TaskDir.existing(kept.dir, this.#options.runAs),
        done: Promise.resolve(kept.status),
      }, { finished: true, claimed: false });
    }
    try {
      const ends = await Promise.all(
        Array.from({ length: this.#options.workers }, (_, i) => this.#nodeLoop(i + 1, workDir, state)),
      );
      const jobs = this.#jobsDone;
      const untrusted = ends.find((e) => e.kind === "untrusted");
      if (untrusted !== undefined) return untrusted;
      const failed = ends.find((e) => e.kind === "failed");
      if (failed !== undefined) return { ...failed, jobs } as RunnerEnd;
      // A Reject after this node did work means nothing is left that it can
      // take (the rest needs other modules): a normal end. A Reject before
      // any task means it could never work here.
      const refused = ends.find((e) => e.kind === "refused");
      if (refused !== undefined && jobs === 0) return refused;
      if (refused !== undefined) log.info("{reason}", { reason: refused.reason });
      return { kind: ends.some((e) => e.kind === "stopped") ? "stopped" : "finished", jobs };
    } finally {
      await this.#ledger?.close();
      if (this.#options.workDir === undefined && state === undefined && !this.#options.keepTaskDirs) {
        await Deno.remove(workDir, { recursive: true }).catch(() => {});
      }
    }
  }

  /** Persist: keeps a task whose owner was lost; once it finishes, records it for delivery. */
  #hold(held: HeldTask, state: RunnerState): void {
    const entry = { finished: false, claimed: false };
    this.#heldTasks.set(held, entry);
    held.done.then(async (status) => {
      entry.finished = true;
      if (!this.#heldTasks.has(held)) return;
      await state.keepTask({ key: held.key, status, rets: [...held.rets], dir: held.dir.path });
      log.info("Kept the results of task {key} until a manager takes them", { key: held.key });
    }).catch((err) => log.error("Could not keep a held task: {err}", { err: (err as Error).message }));
  }

  /** A held task nobody is delivering, finished ones first. */
  #claimHeld(): HeldTask | undefined {
    let pick: HeldTask | undefined;
    for (const [held, entry] of this.#heldTasks) {
      if (entry.claimed) continue;
      if (pick === undefined || entry.finished) pick = held;
      if (entry.finished) break;
    }
    if (pick !== undefined) this.#heldTasks.get(pick)!.claimed = true;
    return pick;
  }

  /** A held task was delivered, or the manager does not want it: forget it. */
  async #forget(held: HeldTask, state: RunnerState, removeDir: boolean): Promise<void> {
    this.#heldTasks.delete(held);
    await state.forgetTask(held.key);
    if (removeDir) await held.done.then(() => held.dir.remove(), () => held.dir.remove());
  }

  async #nodeLoop(id: number, workDir: string, state: RunnerState | undefined): Promise<RunnerEnd> {
    const { hostname, port } = this.#options;
    const persist = this.#options.persist ?? false;
    const backoff = this.#backoff(`Node ${id}: `);
    const retry = backoff.retry;
    let tasks = 0;
    // The extension carries identity and held tasks (persist) and authentication (secret).
    let extension = (persist || this.#options.secret !== undefined) && (this.#options.extension ?? true);
    while (!this.#stopping) {
      const dialed = await this.#dial();
      if (!("transport" in dialed)) {
        const { untrusted, reason } = dialed;
        if (persist) {
          await retry(reason);
          continue;
        }
        if (untrusted) return { kind: "untrusted", reason };
        // Refused after some tasks: the owner's run is over (protocol notes).
        if (tasks > 0) return { kind: "finished", jobs: tasks };
        return { kind: "failed", reason, jobs: 0 };
      }
      const transport = dialed.transport;
      const reader = new BufferedReader(transport, { maxLineBytes: this.#limits.maxLineBytes });
      let held = state ? this.#claimHeld() : undefined;
      let resume: HeldTask | undefined;
      let ownerSilenceMs: number | undefined;
      if (extension) {
        // A persistent node says who it is and which task it still holds; a
        // node with a secret authenticates. (A Join may then wait for a task
        // as long as the owner has none: only the hello has a time limit.)
        const opening = this.#opening(transport);
        const hello = await sayHello(transport, reader, {
          proto: "binary",
          id: state?.id,
          holds: held === undefined ? [] : [HELD_TASK_PREFIX + held.key],
          secret: this.#options.secret,
          manager: `${hostname}:${port}`,
        });
        opening.done();
        const cut = opening.cut;
        if (cut !== undefined) {
          if (held) this.#heldTasks.get(held)!.claimed = false;
          if (cut.stopped) return { kind: "stopped", jobs: tasks };
          if (!persist) return { kind: "failed", reason: cut.reason, jobs: tasks };
          await retry(cut.reason);
          continue;
        }
        if (hello.kind !== "ok") {
          if (held) this.#heldTasks.get(held)!.claimed = false;
          transport.close();
        }
        if (hello.kind === "noExtension") {
          log.info("Node {id}: the manager does not speak the vico extension; a held task cannot be delivered", { id });
          extension = false;
          continue;
        }
        if (hello.kind !== "ok") {
          const reason = hello.kind === "refused" ? `Manager refused this node: ${hello.reason}` : hello.reason;
          if (persist) {
            await retry(reason);
            continue;
          }
          // Closed without a word after tasks: the owner's run is over (as a closed port).
          if (hello.kind === "closed" && (tasks > 0 || this.#stopping)) return { kind: "finished", jobs: tasks };
          if (hello.kind === "untrusted") return { kind: "untrusted", reason };
          if (hello.kind === "refused") return { kind: "refused", reason, auth: hello.auth };
          return { kind: "failed", reason, jobs: tasks };
        }
        const answer = hello.answer;
        ownerSilenceMs = answer.pulse ? answer.pulse * RUNNER_SILENT_PULSES * 1000 : undefined;
        if (held !== undefined && answer.resume === 1) resume = held;
        else if (held !== undefined) {
          log.info("The manager no longer needs task {key}; dropping it", { key: held.key });
          await this.#forget(held, state!, true);
          held = undefined;
        }
      }
      this.#connection(true);
      const session = new NodeSession(transport, reader, {
        modules: this.#options.modules ?? [],
        workDir,
        keepTaskDirs: this.#options.keepTaskDirs,
        killGraceMs: this.#options.killGraceMs,
        limits: this.#limits,
        persist,
        resume,
        ownerSilenceMs,
        runAs: this.#options.runAs,
        cgroups: this.#options.jobCgroups,
        ledger: this.#ledger,
      });
      this.#nodeSessions.add(session);
      const end = await session.run();
      this.#nodeSessions.delete(session);
      if (resume !== undefined) {
        if (end.kind === "done") await this.#forget(resume, state!, false);
        else this.#heldTasks.delete(resume);
      }
      if (end.kind === "detached") {
        this.#hold(end.held, state!);
        await retry(`Lost the manager in the middle of task ${end.held.key}; it runs on`);
        continue;
      }
      if (end.kind === "done") {
        tasks++;
        this.#jobsDone++;
        backoff.reset();
        log.debug("Node {id} finished a task with status {status}", { id, status: end.status });
        continue;
      }
      if (persist && !this.#stopping) {
        // A service: an empty queue or a lost manager only means waiting.
        if (end.kind === "noMoreTasks") {
          backoff.reset();
          await this.#sleep(backoff.maxMs);
        } else {
          await retry(end.kind === "refused" ? `Refused: ${end.reason}` : `Lost the manager: ${end.reason}`);
        }
        continue;
      }
      switch (end.kind) {
        case "noMoreTasks":
          return { kind: "finished", jobs: tasks };
        case "ownerGone":
          // As with a closed port: after tasks, the owner's run is over.
          if (tasks > 0 || this.#stopping) return { kind: "finished", jobs: tasks };
          return {
            kind: "failed",
            reason: `Manager closed the connection before answering Join: ${end.reason}`,
            jobs: 0,
          };
        case "refused":
          return {
            kind: "refused",
            reason: `Manager refused this node: ${end.reason}`,
            auth: isAuthRefusal(end.reason),
          };
        case "failed":
          if (this.#stopping) return { kind: "stopped", jobs: tasks };
          return { kind: "failed", reason: end.reason, jobs: tasks };
      }
    }
    return { kind: "stopped", jobs: tasks };
  }
}
