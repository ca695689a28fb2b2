/**
 * Logging for vico, on `@logtape/logtape`. Library code asks for a logger by
 * category and logs nothing unless an entry point called
 * {@linkcode setupLogging}; entry points log readable lines to stderr.
 *
 * @module
 */

import { configure, getLogger, type Logger, type LogLevel, type LogRecord, reset } from "@logtape/logtape";

/** A logger under the `vico` category, e.g. `logger("manager")`. */
export function logger(...category: string[]): Logger {
  return getLogger(["vico", ...category]);
}

/** Lets a live status line (the progress bar) step aside while a log line is written. */
export interface StatusLine {
  /** Erases the status line. */
  clear(): void;
  /** Draws it again. */
  redraw(): void;
}

let statusLine: StatusLine | undefined;

/** Registers (or removes) the status line that log output must not garble. */
export function setStatusLine(line: StatusLine | undefined): void {
  statusLine = line;
}

const encoder = new TextEncoder();

/** Writes text to stderr completely and synchronously. */
export function writeStderr(text: string): void {
  const bytes = encoder.encode(text);
  let off = 0;
  while (off < bytes.length) off += Deno.stderr.writeSync(bytes.subarray(off));
}

const LEVELS: Record<LogLevel, string> = {
  trace: "TRACE",
  debug: "DEBUG",
  info: "INFO ",
  warning: "WARN ",
  error: "ERROR",
  fatal: "FATAL",
};

/** Formats a record as `12:03:04.567 INFO  manager: message`. */
export function formatRecord(record: LogRecord): string {
  const time = new Date(record.timestamp).toISOString().slice(11, 23);
  let text = "";
  for (let i = 0; i < record.message.length; i++) {
    const part = record.message[i];
    text += i % 2 === 0 || typeof part === "string" ? String(part) : Deno.inspect(part);
  }
  const where = record.category.slice(1).join(".") || "vico";
  return `${time} ${LEVELS[record.level]} ${where}: ${text}\n`;
}

function stderrSink(record: LogRecord): void {
  statusLine?.clear();
  writeStderr(formatRecord(record));
  statusLine?.redraw();
}

/** Options for {@linkcode setupLogging}. */
export interface LoggingOptions {
  /** Lowest level written. @default {"info"} */
  level?: LogLevel;
}

/** Sends vico's logs to stderr. Call once from an entry point. */
export async function setupLogging(options: LoggingOptions = {}): Promise<void> {
  await configure({
    reset: true,
    sinks: { stderr: stderrSink },
    loggers: [
      { category: ["vico"], lowestLevel: options.level ?? "info", sinks: ["stderr"] },
      { category: ["logtape", "meta"], lowestLevel: "warning", sinks: ["stderr"] },
    ],
  });
}

/** Undoes {@linkcode setupLogging} (for tests and embedders). */
export async function resetLogging(): Promise<void> {
  await reset();
}

/**
 * Lets through at most `limit` events per `windowMs` and counts the rest, so
 * that a flood of bad peers cannot flood the log.
 */
export class LogRateLimit {
  readonly #limit: number;
  readonly #windowMs: number;
  #windowStart = 0;
  #count = 0;
  #suppressed = 0;

  /**
   * @param limit Events let through per window.
   * @param windowMs Window length.
   */
  constructor(limit: number, windowMs: number) {
    this.#limit = limit;
    this.#windowMs = windowMs;
  }

  /**
   * Whether to log this event; `suppressed` is how many were held back in the
   * previous window (report it once).
   */
  allow(now = Date.now()): { log: boolean; suppressed: number } {
    let suppressed = 0;
    if (now - this.#windowStart >= this.#windowMs) {
      suppressed = this.#suppressed;
      this.#windowStart = now;
      this.#count = 0;
      this.#suppressed = 0;
    }
    if (this.#count++ < this.#limit) return { log: true, suppressed };
    this.#suppressed++;
    return { log: false, suppressed };
  }
}
