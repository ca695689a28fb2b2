/**
 * The small error set shared by every layer of vico.
 *
 * - {@linkcode ProtocolError}: bad input from the wire (or a peer that broke
 *   the protocol). It carries the offending detail so logs say what arrived.
 * - {@linkcode VicoError}: a domain condition callers are expected to catch,
 *   with a machine-readable {@linkcode VicoErrorCode}.
 *
 * @module
 */

/** Malformed or out-of-place input received from a peer. */
export class ProtocolError extends Error {
  /** The offending bytes or text, shortened for logs (may be empty). */
  readonly detail: string;

  /**
   * @param message What is wrong, in sentence case without a final period.
   * @param detail The offending input, if any; it is quoted and shortened.
   */
  constructor(message: string, detail?: string | Uint8Array) {
    const shown = detail === undefined ? "" : describeBytes(detail);
    super(shown ? `${message}: ${shown}` : message);
    this.name = "ProtocolError";
    this.detail = shown;
  }
}

/** Codes of {@linkcode VicoError}. */
export type VicoErrorCode =
  /** The peer closed the connection (or it dropped) where the protocol expected more. */
  | "CONNECTION_CLOSED"
  /**
   * Refused: a results directory that is not vico's, is in use or holds another list's results; a returned
   * file that may not be stored.
   */
  | "REFUSED"
  /** A job list that cannot be served ({@linkcode JobListError}). */
  | "JOB_LIST_INVALID"
  /** A bad flag, setting or input file given by the user: the command exits 2. */
  | "USAGE"
  /** A peer could not prove who it is (wrong secret, wrong certificate, no authentication). */
  | "AUTH_FAILED"
  /** A setting that would expose a node or a manager (a secret others can read, jobs as root). */
  | "UNSAFE"
  /** A results journal damaged before its last line ({@linkcode JournalDamagedError}): nobody can tell what ran. */
  | "JOURNAL_DAMAGED";

/** A domain error with a stable {@linkcode VicoErrorCode}. */
export class VicoError extends Error {
  /** Stable machine-readable code. */
  readonly code: VicoErrorCode;

  /**
   * @param code What kind of failure this is.
   * @param message What happened and why.
   * @param options Standard error options (`cause`).
   */
  constructor(code: VicoErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "VicoError";
    this.code = code;
  }
}

/** A job list that cannot be served, with the 1-based line it failed on. */
export class JobListError extends VicoError {
  /** 1-based line number in the job list. */
  readonly line: number;

  /**
   * @param line 1-based line number of the offending job.
   * @param message Why the line cannot be served.
   */
  constructor(line: number, message: string) {
    super("JOB_LIST_INVALID", `line ${line}: ${message}`);
    this.name = "JobListError";
    this.line = line;
  }
}

/**
 * A journal line before the last one that is not a record (a torn last line
 * is a crash while appending and is not this error), with its 1-based line.
 */
export class JournalDamagedError extends VicoError {
  /** 1-based line number of the damaged line (counted from where the read started). */
  readonly line: number;
  /** Byte offset where the damaged line starts. */
  readonly offset: number;

  /**
   * @param path The journal.
   * @param line 1-based line number of the damaged line.
   * @param offset Byte offset where it starts.
   * @param why What is wrong with it.
   */
  constructor(path: string, line: number, offset: number, why = "not a record") {
    super(
      "JOURNAL_DAMAGED",
      `Journal ${path} is damaged at line ${line} (byte ${offset}: ${why}); refusing to guess what ran`,
    );
    this.name = "JournalDamagedError";
    this.line = line;
    this.offset = offset;
  }
}

const MAX_SHOWN = 80;

/** Quotes text or bytes for an error message, shortened to a sane length. */
export function describeBytes(input: string | Uint8Array): string {
  let text: string;
  if (typeof input === "string") {
    text = input;
  } else {
    text = "";
    for (const b of input.subarray(0, MAX_SHOWN)) {
      text += b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : `\\x${b.toString(16).padStart(2, "0")}`;
    }
    if (input.length > MAX_SHOWN) text += "…";
    return JSON.stringify(text);
  }
  const cut = text.length > MAX_SHOWN ? text.slice(0, MAX_SHOWN) + "…" : text;
  return JSON.stringify(cut);
}
