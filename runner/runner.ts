/**
 * A runner: connects to a manager, runs the jobs it hands out with N
 * workers, and reports their status and output.
 *
 * The {@linkcode Runner} is a facade: it opens the state directory of a
 * persistent runner and hands the work to one pool, a text pool
 * (`runner/text/text_pool.ts`: N workers sharing one connection) or a node
 * pool (`runner/binary/node_pool.ts`: N node sessions, one task each). Both
 * reach the manager through one {@linkcode ManagerLink}
 * (`runner/connect/`), and after each connection's outcome do what the one
 * reconnect policy says (`runner/connect/reconnect_policy.ts`).
 *
 * @module
 */

import { DEFAULT_LIMITS, type Limits } from "../core/limits.ts";
import { NodePool } from "./binary/node_pool.ts";
import { ManagerLink } from "./connect/manager_link.ts";
import { takeOverState } from "./exec/job_reaper.ts";
import type { PoolState, RunnerActivity, RunnerEnd, RunnerOptions } from "./runner_options.ts";
import { defaultStateDir, type LifeLedger, RunnerState, RunnerStateError } from "./service/runner_state.ts";
import { TextPool } from "./text/text_pool.ts";

export type { RunnerActivity, RunnerEnd, RunnerOptions } from "./runner_options.ts";
export { HANDSHAKE_TIMEOUT_MS } from "./connect/manager_link.ts";

/** What the facade asks of either pool. */
interface Pool {
  /** Serves until the policy ends it. Never rejects. */
  run(state: PoolState): Promise<RunnerEnd>;
  /** Takes no new work (the link is already stopping). */
  stop(): void;
  /** Ends running work now. */
  abort(reason: string): void;
  /** Jobs (binary: tasks) running now. */
  readonly running: number;
  /** Jobs (binary: tasks) reported since the start. */
  readonly done: number;
}

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
  readonly #link: ManagerLink;
  readonly #pool: Pool;

  /** @param options Where to connect and how many jobs to run at once. */
  constructor(options: RunnerOptions) {
    this.#options = options;
    const limits: Limits = { ...DEFAULT_LIMITS, ...options.limits };
    this.#link = new ManagerLink(options, () => options.onConnection?.(this.activity));
    this.#pool = options.protocol === "binary"
      ? new NodePool(options, limits, this.#link)
      : new TextPool(options, limits, this.#link);
  }

  /** Serves until the manager has no more jobs (or until stopped). Never rejects. */
  async run(): Promise<RunnerEnd> {
    if (this.#link.stopping) return { kind: "stopped", jobs: 0 };
    let state: RunnerState | undefined;
    let ledger: LifeLedger | undefined;
    try {
      // First ends what an earlier life of this runner left running in its
      // state directory, then records this life's jobs.
      if (this.#options.persist) {
        state = await RunnerState.open(this.#options.stateDir ?? defaultStateDir());
        ledger = await takeOverState(state, this.#options.killGraceMs ?? 2000);
      }
    } catch (err) {
      state?.close();
      if (err instanceof RunnerStateError) return { kind: "cannot-start", reason: err.message };
      const what = this.#options.protocol === "binary" ? "node" : "runner";
      return { kind: "failed", reason: `Cannot prepare the ${what}: ${(err as Error).message}`, jobs: 0 };
    }
    try {
      return await this.#pool.run({ state, ledger });
    } finally {
      await ledger?.close();
      state?.close();
    }
  }

  /** What the runner is doing now. */
  get activity(): RunnerActivity {
    const { connected, problem } = this.#link;
    return { connected, running: this.#pool.running, done: this.#pool.done, problem };
  }

  /** Takes no new jobs; running ones finish and are reported (or kept, while disconnected). */
  stop(): void {
    this.#link.stop();
    this.#pool.stop();
    // Nothing to finish: an opening still waiting for its manager ends now.
    if (this.#pool.running === 0) this.#link.cutOpenings();
  }

  /** Kills running jobs and drops the connection. */
  abort(reason: string): void {
    this.#link.stop();
    this.#pool.abort(reason);
  }
}
