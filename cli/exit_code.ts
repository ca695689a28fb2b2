/**
 * The exit codes of `manager` and `runner` (documented in the README and in
 * each command's usage text).
 *
 * @module
 */

/** Exit codes of `manager` and `runner` (documented in the README). */
export const ExitCode = Object.freeze({
  /** Manager: every job exited 0. Runner: the manager had no more jobs. */
  OK: 0,
  /** Manager: some job exited non-zero. Runner: connection lost, dropped, or protocol error. */
  FAILED: 1,
  /** Bad flags or an invalid job list: nothing ran. */
  USAGE: 2,
  /**
   * Manager: could not start (port in use, results directory unusable).
   * Runner: version refused, or its `--state-dir` held by another runner.
   */
  CANNOT_START: 3,
  /** Runner: the manager could not be verified (TLS certificate, secret) or refused this runner's proof. */
  UNTRUSTED: 4,
});

/**
 * The exit code of a command stopped by a signal: 128 plus its number, as
 * shells report it.
 *
 * @example
 * ```ts
 * import { signalExitCode } from "./exit_code.ts";
 * console.assert(signalExitCode("SIGINT") === 130 && signalExitCode("SIGTERM") === 143);
 * ```
 */
export function signalExitCode(sig: "SIGHUP" | "SIGINT" | "SIGQUIT" | "SIGTERM" | "SIGPIPE"): number {
  return 128 + { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGPIPE: 13, SIGTERM: 15 }[sig];
}

/** A failure that ends the command with `exitCode`, its message printed. */
export class CommandFailure extends Error {
  /** The exit code. */
  readonly exitCode: number;
  /** @param exitCode the command's exit code @param message what to print */
  constructor(exitCode: number, message: string) {
    super(message);
    this.name = "CommandFailure";
    this.exitCode = exitCode;
  }
}
