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
