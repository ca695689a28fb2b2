/**
 * A manager: serves a job list to runners and records every result. With
 * `local: N` it also starts N runner workers of its own on loopback, which
 * makes one process a complete local run.
 *
 * @module
 */

import { DEFAULT_LIMITS, type Limits } from "../protocol/limits.ts";
import { listenTcp } from "../transport/conn_transport.ts";
import type { TransportListener } from "../transport/transport.ts";
import { logger } from "../util/log.ts";
import { Runner } from "../runner/runner.ts";
import type { RunnerEnd } from "../runner/text_client.ts";
import { jobKey } from "./job_key.ts";
import { identityOf, type JobList } from "./job_list.ts";
import { JobQueue } from "./job_queue.ts";
import { ResultsStore } from "./results_store.ts";
import { type RunnerLink, Scheduler } from "./scheduler.ts";
import { Server } from "./server.ts";
import { ManagerTextSession } from "./text_session.ts";

/** The port a manager listens on unless told otherwise. */
export const DEFAULT_PORT = 7707;

/** Options for {@linkcode Manager.start}. */
export interface ManagerOptions {
  /** The jobs to serve. */
  jobs: JobList;
  /** Where results go. */
  resultsDir: string;
  /** Address to listen on. @default {"127.0.0.1"} */
  hostname?: string;
  /** Port to listen on; 0 picks a free one. @default {DEFAULT_PORT} */
  port?: number;
  /** Runner workers to start in this process on loopback. @default {0} */
  local?: number;
  /** Wire limits. */
  limits?: Partial<Limits>;
  /** fsync outputs and journal before acknowledging. @default {true} */
  durable?: boolean;
  /** How long after the last result to wait for runners to close cleanly. @default {5000} */
  drainTimeoutMs?: number;
  /** How long a connection may take to hail. @default {30000} */
  handshakeTimeoutMs?: number;
  /** Called when a job settles (for progress display). */
  onSettled?: (job: number, status: number, host: string) => void;
}

/** What a finished run did. */
export interface RunSummary {
  /** Jobs in the list. */
  jobs: number;
  /** Jobs settled by an earlier run on the same results directory, not run again. */
  skipped: number;
  /** Jobs of the list that exited 0 (this run or earlier). */
  succeeded: number;
  /** Jobs of the list that exited non-zero (this run or earlier). */
  failed: number;
  /** Wall time from start to the last result, in milliseconds. */
  elapsedMs: number;
  /** Settled jobs per runner host, most first. */
  byHost: [host: string, jobs: number][];
  /** The results directory. */
  resultsDir: string;
}

const log = logger("manager");

/** The address local runners dial: the listen address, or loopback for a wildcard. */
function localTarget(hostname: string): string {
  return hostname === "0.0.0.0" ? "127.0.0.1" : hostname === "::" ? "::1" : hostname;
}

/**
 * Serves jobs until every one is settled.
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
  /** Resolves with the summary once every job is settled and runners are gone. */
  readonly finished: Promise<RunSummary>;
  readonly #listener: TransportListener;
  readonly #server: Server;
  readonly #localRunners: Runner[] = [];

  private constructor(
    listener: TransportListener,
    server: Server,
    finished: (self: Manager) => Promise<RunSummary>,
  ) {
    this.#listener = listener;
    this.#server = server;
    this.address = listener.address;
    this.finished = finished(this);
  }

  /** Opens the results directory, listens, and starts serving. */
  static async start(options: ManagerOptions): Promise<Manager> {
    const limits: Limits = { ...DEFAULT_LIMITS, ...options.limits };
    const { jobs } = options;
    const results = await ResultsStore.open(options.resultsDir, { durable: options.durable });
    const keyOf = (job: number) => jobKey(identityOf(jobs, job), jobs.occurrences[job]);
    // Jobs settled by an earlier run on this results directory are not run again.
    let skipped = 0;
    let failedEarlier = 0;
    const queue = new JobQueue(jobs.commands.length, {
      classOf: jobs.classOf,
      classes: jobs.classes.length,
      settled: results.previous.size === 0 ? undefined : (job) => {
        const status = results.previous.get(keyOf(job));
        if (status === undefined) return false;
        skipped++;
        if (status !== 0) failedEarlier++;
        return true;
      },
    });
    if (skipped > 0) {
      log.info("Resuming in {dir}: {skipped} job(s) already settled, {left} to run", {
        dir: options.resultsDir,
        skipped,
        left: queue.pending,
      });
    }
    const localNames = new Set(Array.from({ length: options.local ?? 0 }, (_, i) => `local-${i + 1}`));
    const scheduler = new Scheduler(queue, jobs.classes, {
      onJoined: (link) => {
        const own = localNames.has(link.host) && /^(127\.|\[?::1)/.test(link.peer);
        log[own ? "debug" : "info"]("Runner {host} joined from {peer}", { host: link.host, peer: link.peer });
      },
      onSettled: (job, status, link: RunnerLink) => options.onSettled?.(job, status, link.host),
      onRequeued: (requeued, link) =>
        log.warn("{count} job(s) of runner {host} go back to the queue", { count: requeued.length, host: link.host }),
    });
    const context = {
      scheduler,
      results,
      jobs,
      limits,
      keyOf,
      handshakeTimeoutMs: options.handshakeTimeoutMs ?? 30_000,
    };
    let listener: TransportListener;
    try {
      listener = listenTcp(options.hostname ?? "127.0.0.1", options.port ?? DEFAULT_PORT);
    } catch (err) {
      await results.close();
      throw err;
    }
    const server = new Server(listener, {
      text: (transport, reader) => new ManagerTextSession(transport, reader, context),
    }, { limits, firstByteTimeoutMs: context.handshakeTimeoutMs });
    const started = performance.now();

    return new Manager(listener, server, async (self) => {
      const serving = server.serve();
      const locals = self.#startLocalRunners(queue.finished ? 0 : options.local ?? 0);
      await scheduler.done;
      const elapsedMs = performance.now() - started;
      server.close();
      await server.drain(options.drainTimeoutMs ?? 5000);
      await serving;
      for (const end of await Promise.all(locals)) {
        if (end.kind !== "finished") log.warn("Local runner ended: {reason}", { reason: end.reason });
      }
      await results.close();
      const failed = scheduler.failed + failedEarlier;
      return {
        jobs: queue.size,
        skipped,
        succeeded: queue.size - failed,
        failed,
        elapsedMs,
        byHost: [...scheduler.settledByHost].sort((a, b) => b[1] - a[1]),
        resultsDir: options.resultsDir,
      };
    });
  }

  #startLocalRunners(count: number): Promise<RunnerEnd>[] {
    const ends: Promise<RunnerEnd>[] = [];
    for (let i = 1; i <= count; i++) {
      // One connection per worker: a worker never waits for another's reply.
      const runner = new Runner({
        hostname: localTarget(this.address.hostname),
        port: this.address.port,
        workers: 1,
        name: `local-${i}`,
        embedded: true,
      });
      this.#localRunners.push(runner);
      ends.push(runner.run());
    }
    return ends;
  }

  /** Stops listening and drops every runner (their jobs stay unsettled). */
  close(): void {
    for (const runner of this.#localRunners) runner.abort("manager is closing");
    this.#server.close();
    this.#listener.close();
  }
}
