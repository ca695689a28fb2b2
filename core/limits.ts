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

/**
 * Most bytes that all connections still in their handshake may have made the
 * manager read, together: the extension's hello, proof and held-job lines,
 * the text hail and KOMPRENAS, the binary Join. An honest handshake is a few
 * hundred bytes (plus its held jobs' command lines); 10,000 held lines of
 * 64 KiB on each of 256 connections would be 160 GiB. Each connection's share
 * is released when its handshake completes; when a read would take the total
 * over, the connection holding the most is closed with a reason (usually the
 * one reading).
 */
export const HANDSHAKE_BUDGET_BYTES = 64 * 1024 ** 2;

/**
 * A connection mid-handshake that sends nothing for this long while the
 * manager waits for it has stalled: while as many connections as allowed are
 * mid-handshake (`--max-unauthenticated`), stalled ones are closed to make
 * room, and new ones wait in the kernel's listen backlog. A handshake that
 * keeps moving is never closed for room; it still has its whole window
 * (30 s from accept) to finish.
 */
export const HANDSHAKE_STALL_MS = 5000;
