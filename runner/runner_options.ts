/**
 * What a {@linkcode Runner} is told, what it reports while it works, and how
 * it ends: the types its facade (`runner/runner.ts`) and its pools share.
 *
 * @module
 */

import type { Limits } from "../core/limits.ts";
import type { SharedSecret } from "../protocol/auth.ts";
import type { Transport } from "../transport/transport.ts";
import type { JobCgroups } from "./exec/job_cgroup.ts";
import type { RunAs } from "./exec/run_as.ts";
import type { LifeLedger, RunnerState } from "./service/runner_state.ts";

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
  /** It could not start: its state directory is held by another runner process. Nothing was sent or run. */
  | { readonly kind: "cannot-start"; readonly reason: string }
  | { readonly kind: "failed"; readonly reason: string; readonly jobs: number };

/** What a runner's pool runs on: the state and ledger of a persistent runner (`--persist`), none otherwise. */
export interface PoolState {
  /** The state directory. */
  readonly state?: RunnerState;
  /** Where running jobs are written down. */
  readonly ledger?: LifeLedger;
}
