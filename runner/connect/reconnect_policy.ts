/**
 * What a runner does after each outcome of a connection to its manager:
 * connect again (after a backoff, at once, or after the idle pause) or end,
 * and with which {@linkcode RunnerEnd}. One table, {@linkcode RECONNECT_POLICY},
 * for both protocols; the text pool's connection loop and the node pool's
 * node loops look their outcomes up here (through `Reconnect`) and decide
 * nothing on their own. Outcomes are named (or an error code of
 * `core/errors.ts`), never message text.
 *
 * The exit code follows from the end (`cli/runner_main.ts`): finished and
 * stopped exit 0, failed 1, refused 3 (4 when for authentication), untrusted 4.
 *
 * @module
 */

import type { RunnerEnd } from "../runner_options.ts";

/** How a connection (or an attempt at one) came out. */
export type ConnectionOutcome =
  // Dialling and the opening, both protocols.
  /** The manager could not be verified (TLS certificate when dialling, or the secret in the hello). */
  | "AUTH_FAILED"
  /** Dialling failed otherwise (refused, unreachable, no such host). */
  | "unreachable"
  /** A stop with nothing running cut the opening short. */
  | "openingStopped"
  /** The manager accepted the connection but did not complete the opening in time. */
  | "handshakeTimeout"
  /** The manager does not speak the vico extension: connect again without it. */
  | "noExtension"
  /** The manager answered the hello `VICO/1 no`. */
  | "helloRefused"
  /** With a secret: the manager closed the connection without a word (its run may be over). */
  | "closedSilently"
  /** The connection failed during its opening. */
  | "openingFailed"
  // The text protocol.
  /** The manager speaks a protocol version this runner does not. */
  | "versionRefused"
  /** The manager said it has no more jobs (FINO). */
  | "goodbye"
  /** The connection ended because the runner stopped. */
  | "stopped"
  /** The live connection was lost (or the manager broke the protocol). */
  | "lost"
  // The binary protocol (one node session).
  /** The session's task is done and accepted. */
  | "taskDone"
  /** The owner was lost in the middle of a task, which runs on (`--persist`). */
  | "detached"
  /** The owner has no more tasks. */
  | "noMoreTasks"
  /** The owner answered Join with Reject. */
  | "rejected"
  /** The owner closed the connection before answering Join. */
  | "ownerGone"
  /** The session failed (a lost owner mid-task without `--persist`, a broken protocol). */
  | "sessionFailed";

/** What follows an outcome. */
export type ReconnectStep =
  /**
   * Connect again: `backoff` after the next backoff wait (the reason is
   * logged and reported), `now` at once, `idle` after the longest wait
   * (a service whose manager has no work); `reset` first resets the backoff.
   */
  | { readonly retry: "backoff" | "now" | "idle"; readonly reset?: true }
  /** End the loop as `finish`; as `afterWork` instead when this loop has already done work. */
  | { readonly finish: RunnerEnd["kind"]; readonly afterWork?: RunnerEnd["kind"] };

/** The step for each situation an outcome can come in. */
export interface ReconnectRule {
  /** Without `--persist`. */
  readonly once: ReconnectStep;
  /** Without `--persist`, while the runner stops. @default {once} */
  readonly onceStopping?: ReconnectStep;
  /** With `--persist`: a service, whose manager may come back. */
  readonly persist: ReconnectStep;
  /** With `--persist`, while the runner stops. @default {persist} */
  readonly persistStopping?: ReconnectStep;
}

const BACKOFF: ReconnectStep = { retry: "backoff" };
const NOW: ReconnectStep = { retry: "now" };
const finish = (kind: RunnerEnd["kind"], afterWork?: RunnerEnd["kind"]): ReconnectStep =>
  afterWork === undefined ? { finish: kind } : { finish: kind, afterWork };

/**
 * The reconnect policy: each outcome's step, without and with `--persist`,
 * and while stopping. A closed connection after work means the manager's
 * run is over (protocol notes), hence `afterWork: "finished"`.
 */
export const RECONNECT_POLICY: Readonly<Record<ConnectionOutcome, ReconnectRule>> = Object.freeze({
  AUTH_FAILED: { once: finish("untrusted"), persist: BACKOFF },
  unreachable: { once: finish("failed", "finished"), persist: BACKOFF },
  openingStopped: { once: finish("stopped"), persist: finish("stopped") },
  handshakeTimeout: { once: finish("failed"), persist: BACKOFF },
  noExtension: { once: NOW, persist: NOW },
  helloRefused: { once: finish("refused"), persist: BACKOFF },
  closedSilently: { once: finish("failed", "finished"), onceStopping: finish("finished"), persist: BACKOFF },
  openingFailed: { once: finish("failed"), persist: BACKOFF },
  // Another protocol version does not change while the runner waits.
  versionRefused: { once: finish("refused"), persist: finish("refused") },
  goodbye: { once: finish("finished"), persist: { retry: "idle" }, persistStopping: finish("finished") },
  stopped: { once: finish("stopped"), persist: finish("stopped") },
  // With --persist the jobs run on and the runner comes back for them, stopping or not.
  lost: { once: finish("failed"), persist: BACKOFF },
  taskDone: { once: { retry: "now", reset: true }, persist: { retry: "now", reset: true } },
  detached: { once: BACKOFF, persist: BACKOFF },
  noMoreTasks: {
    once: finish("finished"),
    persist: { retry: "idle", reset: true },
    persistStopping: finish("finished"),
  },
  rejected: { once: finish("refused"), persist: BACKOFF, persistStopping: finish("refused") },
  ownerGone: {
    once: finish("failed", "finished"),
    onceStopping: finish("finished"),
    persist: BACKOFF,
    persistStopping: finish("finished"),
  },
  sessionFailed: {
    once: finish("failed"),
    onceStopping: finish("stopped"),
    persist: BACKOFF,
    persistStopping: finish("stopped"),
  },
});

/** Where a loop stands when an outcome comes. */
export interface ReconnectSituation {
  /** `--persist`. */
  readonly persist: boolean;
  /** The runner is stopping. */
  readonly stopping: boolean;
}

/**
 * The step after `outcome`, looked up in {@linkcode RECONNECT_POLICY}.
 *
 * @example
 * ```ts
 * import { stepAfter } from "./reconnect_policy.ts";
 * console.assert("retry" in stepAfter("lost", { persist: true, stopping: false }));
 * console.assert("finish" in stepAfter("lost", { persist: false, stopping: false }));
 * ```
 */
export function stepAfter(outcome: ConnectionOutcome, situation: ReconnectSituation): ReconnectStep {
  const rule = RECONNECT_POLICY[outcome];
  if (situation.persist) return situation.stopping ? rule.persistStopping ?? rule.persist : rule.persist;
  return situation.stopping ? rule.onceStopping ?? rule.once : rule.once;
}

/** What an end says besides its kind. */
export interface EndDetail {
  /** Why (a failed, refused or untrusted end). */
  readonly reason?: string;
  /** A refusal was for authentication. */
  readonly auth?: boolean;
  /** Jobs (binary: tasks) this loop reported. */
  readonly jobs: number;
}

/** The {@linkcode RunnerEnd} a finishing step names (`afterWork` when the loop has done work). */
export function endOf(step: Extract<ReconnectStep, { finish: unknown }>, detail: EndDetail): RunnerEnd {
  const kind = detail.jobs > 0 && step.afterWork !== undefined ? step.afterWork : step.finish;
  const { jobs } = detail;
  const reason = detail.reason ?? "";
  switch (kind) {
    case "finished":
    case "stopped":
      return { kind, jobs };
    case "failed":
      return { kind, reason, jobs };
    case "refused":
      return { kind, reason, auth: detail.auth ?? false };
    case "untrusted":
    case "cannot-start":
      return { kind, reason };
  }
}
