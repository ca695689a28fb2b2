/**
 * A runner: connects to a manager, runs the jobs it hands out with N
 * workers, and reports their status and output.
 *
 * @module
 */

import { BufferedReader } from "../protocol/buffered_reader.ts";
import { DEFAULT_LIMITS, type Limits } from "../protocol/limits.ts";
import { connectTcp } from "../transport/conn_transport.ts";
import type { Transport } from "../transport/transport.ts";
import { logger } from "../util/log.ts";
import { NodeSession } from "./node_session.ts";
import { OutputSpool } from "./output_spool.ts";
import { runProcess, shellArgv, STATUS_RUNNER_FAILURE } from "./process_runner.ts";
import { type JobExecutor, type RunnerEnd, RunnerTextClient } from "./text_client.ts";

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
  /** Runs inside a manager process (`--local`): connection events are logged at debug level. */
  embedded?: boolean;
  /** How to connect (tests and TLS plug in here). @default {TCP} */
  connect?: (hostname: string, port: number) => Promise<Transport>;
}

const log = logger("runner");

/**
 * Runs jobs for a manager until it says there are no more.
 *
 * @example
 * ```ts ignore
 * const end = await new Runner({ hostname: "127.0.0.1", port: 7707, workers: 4 }).run();
 * if (end.kind !== "finished") console.error(end.reason);
 * ```
 */
export class Runner {
  readonly #options: RunnerOptions;
  readonly #limits: Limits;
  #client: RunnerTextClient | undefined;
  readonly #nodeSessions = new Set<NodeSession>();
  #tasksDone = 0;
  #stopped = false;

  /** @param options Where to connect and how many jobs to run at once. */
  constructor(options: RunnerOptions) {
    this.#options = options;
    this.#limits = { ...DEFAULT_LIMITS, ...options.limits };
  }

  /** Connects and serves until the manager has no more jobs. Never rejects. */
  async run(): Promise<RunnerEnd> {
    if (this.#stopped) return { kind: "stopped", jobs: 0 };
    if (this.#options.protocol === "binary") return await this.#runNodes();
    const { hostname, port } = this.#options;
    const name = this.#options.name ?? Deno.hostname();
    let transport: Transport;
    try {
      transport = await (this.#options.connect ?? connectTcp)(hostname, port);
    } catch (err) {
      const reason = `Cannot connect to the manager at ${hostname}:${port}: ${
        err instanceof Error ? err.message : err
      }`;
      return { kind: "failed", reason, jobs: 0 };
    }
    let spoolDir: string;
    try {
      spoolDir = this.#options.spoolDir ?? await Deno.makeTempDir({ prefix: "vico-runner-" });
    } catch (err) {
      transport.close();
      return { kind: "failed", reason: `Cannot create a spool directory: ${(err as Error).message}`, jobs: 0 };
    }
    try {
      const reader = new BufferedReader(transport, { maxLineBytes: this.#limits.maxLineBytes });
      this.#client = new RunnerTextClient(transport, reader, {
        name,
        workers: this.#options.workers,
        execute: this.#executor(spoolDir),
      });
      if (this.#stopped) this.#client.stop();
      log[this.#options.embedded ? "debug" : "info"]("Connected to {host}:{port} as {name} with {workers} worker(s)", {
        host: hostname,
        port,
        name,
        workers: this.#options.workers,
      });
      return await this.#client.run();
    } finally {
      transport.close();
      if (this.#options.spoolDir === undefined) await Deno.remove(spoolDir, { recursive: true }).catch(() => {});
    }
  }

  /** Takes no new jobs; running ones finish and are reported. */
  stop(): void {
    this.#stopped = true;
    this.#client?.stop();
    // Binary sessions waiting for a task have nothing to finish.
    for (const session of this.#nodeSessions) if (session.state === "Joining") session.abort();
  }

  /** Kills running jobs and drops the connection. */
  abort(reason: string): void {
    this.#stopped = true;
    this.#client?.abort(reason);
    for (const session of this.#nodeSessions) session.abort();
  }

  /** Binary protocol: N node sessions, each one task at a time, joining again after each. */
  async #runNodes(): Promise<RunnerEnd> {
    const workDir = this.#options.workDir ?? await Deno.makeTempDir({ prefix: "vico-node-" });
    try {
      const ends = await Promise.all(
        Array.from({ length: this.#options.workers }, (_, i) => this.#nodeLoop(i + 1, workDir)),
      );
      const jobs = this.#tasksDone;
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
      if (this.#options.workDir === undefined && !this.#options.keepTaskDirs) {
        await Deno.remove(workDir, { recursive: true }).catch(() => {});
      }
    }
  }

  async #nodeLoop(id: number, workDir: string): Promise<RunnerEnd> {
    const { hostname, port } = this.#options;
    let tasks = 0;
    while (!this.#stopped) {
      let transport: Transport;
      try {
        transport = await (this.#options.connect ?? connectTcp)(hostname, port);
      } catch (err) {
        // Refused after some tasks: the owner's run is over (protocol notes).
        if (tasks > 0) return { kind: "finished", jobs: tasks };
        const reason = `Cannot connect to the manager at ${hostname}:${port}: ${
          err instanceof Error ? err.message : err
        }`;
        return { kind: "failed", reason, jobs: 0 };
      }
      const session = new NodeSession(
        transport,
        new BufferedReader(transport, { maxLineBytes: this.#limits.maxLineBytes }),
        {
          modules: this.#options.modules ?? [],
          workDir,
          keepTaskDirs: this.#options.keepTaskDirs,
          killGraceMs: this.#options.killGraceMs,
          limits: this.#limits,
        },
      );
      this.#nodeSessions.add(session);
      const end = await session.run();
      this.#nodeSessions.delete(session);
      switch (end.kind) {
        case "done":
          tasks++;
          this.#tasksDone++;
          log.debug("Node {id} finished a task with status {status}", { id, status: end.status });
          continue;
        case "noMoreTasks":
          return { kind: "finished", jobs: tasks };
        case "ownerGone":
          // As with a closed port: after tasks, the owner's run is over.
          if (tasks > 0 || this.#stopped) return { kind: "finished", jobs: tasks };
          return {
            kind: "failed",
            reason: `Manager closed the connection before answering Join: ${end.reason}`,
            jobs: 0,
          };
        case "refused":
          return { kind: "refused", reason: `Manager refused this node: ${end.reason}` };
        case "failed":
          if (this.#stopped) return { kind: "stopped", jobs: tasks };
          return { kind: "failed", reason: end.reason, jobs: tasks };
      }
    }
    return { kind: "stopped", jobs: tasks };
  }

  #executor(spoolDir: string): JobExecutor {
    return async (command, signal) => {
      const output = new OutputSpool({ dir: spoolDir, maxBytes: this.#limits.maxOutputBytes });
      try {
        const { status } = await runProcess(shellArgv(command), {
          sink: output.write,
          signal,
          killGraceMs: this.#options.killGraceMs,
        });
        return { status, output };
      } catch (err) {
        // The job's output could not be kept (over the limit, or the spool
        // failed): the job fails on its own, with a note saying why, and
        // the session goes on.
        await output.dispose();
        const reason = err instanceof Error ? err.message : String(err);
        log.warn("Job {job} failed in the runner: {reason}", { job: command, reason });
        const note = new OutputSpool({ dir: spoolDir });
        await note.write(new TextEncoder().encode(`vico runner: ${reason}; the job was killed\n`));
        return { status: STATUS_RUNNER_FAILURE, output: note };
      }
    };
  }
}
