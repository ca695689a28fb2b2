/**
 * `--joblog FILE`: GNU Parallel's job log, for the tools that read it.
 *
 * A header line, then one line per ended job, in the order jobs end,
 * tab-separated:
 *
 * | Column     | Value                                                        |
 * |------------|--------------------------------------------------------------|
 * | Seq        | the job's sequence number (`{#}`)                            |
 * | Host       | where it ran: `:` for this machine (as Parallel), else the runner's name |
 * | Starttime  | Unix time it started, seconds with 3 decimals                |
 * | JobRuntime | seconds it ran, 3 decimals, right-aligned in 10 characters   |
 * | Send       | bytes sent with it (staged input files; 0 for a command)     |
 * | Receive    | bytes it returned (its output, as stored)                    |
 * | Exitval    | exit status (0 when a signal ended it, as Parallel)          |
 * | Signal     | the signal that ended it, else 0                             |
 * | Command    | its command line (a newline written as NUL, as Parallel)     |
 *
 * @module
 */

/** Parallel's joblog header line, with its newline. */
export const JOBLOG_HEADER = "Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand\n";

/** The host column for a job run on this machine, as Parallel writes it. */
export const LOCAL_HOST = ":";

/** One ended job, for the joblog. */
export interface JoblogEntry {
  /** Sequence number, 1-based. */
  readonly seq: number;
  /** Where it ran ({@linkcode LOCAL_HOST} for this machine). */
  readonly host: string;
  /** When it started, Unix time in milliseconds. */
  readonly startMs: number;
  /** How long it ran, in milliseconds. */
  readonly runtimeMs: number;
  /** Bytes sent with it. */
  readonly sendBytes: number;
  /** Bytes it returned. */
  readonly receiveBytes: number;
  /** Exit status, 0-255. */
  readonly exitval: number;
  /** Signal number that ended it, or 0. */
  readonly signal: number;
  /** Its command line. */
  readonly command: string;
}

/**
 * One joblog line, with its newline. When a signal ended the job the
 * Exitval column is 0, as Parallel writes it (vico's shell-style 128+n is
 * in the Signal column as n).
 *
 * @example
 * ```ts
 * import { joblogLine } from "./joblog.ts";
 * const line = joblogLine({
 *   seq: 1, host: ":", startMs: 1796164605998, runtimeMs: 14, sendBytes: 0, receiveBytes: 2,
 *   exitval: 0, signal: 0, command: "echo 0",
 * });
 * console.assert(line === "1\t:\t1796164605.998\t     0.014\t0\t2\t0\t0\techo 0\n");
 * ```
 */
export function joblogLine(entry: JoblogEntry): string {
  return [
    String(entry.seq),
    columnSafe(entry.host),
    (entry.startMs / 1000).toFixed(3),
    (entry.runtimeMs / 1000).toFixed(3).padStart(10),
    String(entry.sendBytes),
    String(entry.receiveBytes),
    String(entry.signal !== 0 ? 0 : entry.exitval),
    String(entry.signal),
    entry.command.replaceAll("\n", "\0"),
  ].join("\t") + "\n";
}

/** A host name with no tab or newline in it (they would shift the columns). */
function columnSafe(text: string): string {
  return text.replace(/[\t\n]/g, " ");
}

/**
 * Writes a joblog: the header first, then each entry, one write at a time
 * in the order given.
 *
 * @example
 * ```ts
 * import { JOBLOG_HEADER, JoblogWriter } from "./joblog.ts";
 * let text = "";
 * const log = new JoblogWriter(async (bytes) => void (text += new TextDecoder().decode(bytes)));
 * await log.entry({
 *   seq: 1, host: ":", startMs: 0, runtimeMs: 0, sendBytes: 0, receiveBytes: 0, exitval: 0, signal: 0, command: "true",
 * });
 * console.assert(text.startsWith(JOBLOG_HEADER));
 * ```
 */
export class JoblogWriter {
  readonly #write: (bytes: Uint8Array) => Promise<void>;
  readonly #encoder = new TextEncoder();
  #tail: Promise<void> = Promise.resolve();
  /** The first write that failed: nothing is written after it (a joblog with a hole would mislead). */
  #failure: unknown;

  /** @param write Appends bytes to the joblog file, all of them before resolving. */
  constructor(write: (bytes: Uint8Array) => Promise<void>) {
    this.#write = write;
    this.#append(JOBLOG_HEADER);
  }

  /**
   * Appends one ended job's line (after the header and every earlier
   * entry). Never rejects: a failed write is kept for {@linkcode flushed}.
   */
  entry(entry: JoblogEntry): Promise<void> {
    return this.#append(joblogLine(entry));
  }

  /** Resolves once everything given so far is written; rejects with the first write that failed. */
  flushed(): Promise<void> {
    return this.#tail.then(() => {
      if (this.#failure !== undefined) throw this.#failure;
    });
  }

  #append(text: string): Promise<void> {
    const bytes = this.#encoder.encode(text);
    this.#tail = this.#tail
      .then(() => this.#failure === undefined ? this.#write(bytes) : undefined)
      .catch((err) => void (this.#failure ??= err));
    return this.#tail;
  }
}

/**
 * Reads a joblog's entries back (for `--resume-failed` from a Parallel
 * joblog, or to check one). Lines that do not have the nine columns are
 * skipped, as is the header.
 *
 * @example
 * ```ts
 * import { JOBLOG_HEADER, parseJoblog } from "./joblog.ts";
 * const [e] = parseJoblog(JOBLOG_HEADER + "3\t:\t1.500\t     0.250\t0\t4\t1\t0\techo a\tb\n");
 * console.assert(e.seq === 3 && e.startMs === 1500 && e.runtimeMs === 250 && e.command === "echo a\tb");
 * ```
 */
export function parseJoblog(text: string): JoblogEntry[] {
  const entries: JoblogEntry[] = [];
  for (const line of text.split("\n")) {
    const cols = line.split("\t");
    if (cols.length < 9 || !/^[0-9]+$/.test(cols[0])) continue;
    const [seq, host, start, runtime, send, receive, exitval, signal] = cols;
    const numbers = [start, runtime, send, receive, exitval, signal].map((c) => Number(c.trim()));
    if (numbers.some((n) => !Number.isFinite(n))) continue;
    entries.push({
      seq: Number(seq),
      host,
      startMs: Math.round(numbers[0] * 1000),
      runtimeMs: Math.round(numbers[1] * 1000),
      sendBytes: numbers[2],
      receiveBytes: numbers[3],
      exitval: numbers[4],
      signal: numbers[5],
      command: cols.slice(8).join("\t").replaceAll("\0", "\n"),
    });
  }
  return entries;
}
