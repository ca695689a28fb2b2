/**
 * Limits on everything a peer can make us allocate or store. Every length
 * read from the wire is checked against one of these before anything is
 * allocated.
 *
 * @module
 */

/** Configured limits for one side of a connection. */
export interface Limits {
  /** Longest text-protocol line, terminator excluded (notes: 64 KiB). */
  maxLineBytes: number;
  /** Largest output a text runner may announce in `REZULTO` (`<SIZE>`). */
  maxOutputBytes: number;
  /** Largest binary File or Result payload. */
  maxFileBytes: number;
  /** Longest string carried in a binary frame (reasons, Join, names). */
  maxStringBytes: number;
  /** Most files, runs or returns staged in one binary task. */
  maxFilesPerTask: number;
}

/** 16 GiB, the notes' default ceiling for outputs and files. */
export const SIXTEEN_GIB = 16 * 1024 ** 3;

/** The defaults from the protocol notes. */
export const DEFAULT_LIMITS: Readonly<Limits> = Object.freeze({
  maxLineBytes: 64 * 1024,
  maxOutputBytes: SIXTEEN_GIB,
  maxFileBytes: SIXTEEN_GIB,
  maxStringBytes: 64 * 1024,
  maxFilesPerTask: 10_000,
});

/**
 * Longest reason we send (Reject, Disconnect, ERARO), in characters: well
 * under any peer's string and line limits even as 4-byte UTF-8. Longer ones
 * (an OS error quoting a hostile 60 000-byte name) are cut by {@linkcode clipReason}.
 */
export const MAX_REASON_CHARS = 4000;

/**
 * A reason cut to {@linkcode MAX_REASON_CHARS}, saying how much was cut.
 *
 * @example
 * ```ts
 * import { clipReason } from "./limits.ts";
 * console.assert(clipReason("x".repeat(9000)).length < 4100);
 * ```
 */
export function clipReason(reason: string): string {
  if (reason.length <= MAX_REASON_CHARS) return reason;
  return `${reason.slice(0, MAX_REASON_CHARS)}… (${reason.length - MAX_REASON_CHARS} more characters cut)`;
}
