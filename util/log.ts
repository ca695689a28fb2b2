/**
 * Logging for vico, on `@logtape/logtape`. Library code asks for a logger by
 * category and logs nothing unless an entry point called
 * {@linkcode setupLogging}; entry points log to stderr: readable lines
 * (`12:03:04.567 INFO  manager: …`), the same without the time and with a
 * syslog priority prefix under journald (which stamps lines itself), or JSON
 * lines (`--log-format json`).
 *
 * @module
 */

import { VicoError } from "../core/errors.ts";
import { configure, getLogger, type Logger, type LogLevel, type LogRecord, reset } from "@logtape/logtape";
import { processOutputSync } from "./command.ts";
import { printableLines } from "./printable.ts";

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

/** Log levels, lowest first, as `--log-level` takes them. */
export const LOG_LEVELS: readonly LogLevel[] = ["trace", "debug", "info", "warning", "error", "fatal"];

/** Output formats of the log. */
export type LogFormat = "text" | "json" | "journal";

/** syslog priorities for journald's `<N>` line prefix (sd-daemon(3)). */
const PRIORITY: Record<LogLevel, number> = { trace: 7, debug: 7, info: 6, warning: 4, error: 3, fatal: 2 };

/**
 * The record's message, its values through `printableLines`: a value may
 * come from a peer (a runner's host name, a job's command line), and an
 * escape sequence in it must not reach the operator's terminal raw.
 */
function messageText(record: LogRecord): string {
  let text = "";
  for (let i = 0; i < record.message.length; i++) {
    const part = record.message[i];
    if (i % 2 === 0) text += String(part);
    else text += printableLines(typeof part === "string" ? part : Deno.inspect(part));
  }
  return text;
}

function where(record: LogRecord): string {
  return record.category.slice(1).join(".") || "vico";
}

/** Formats a record as `12:03:04.567 INFO  manager: message`. */
export function formatRecord(record: LogRecord): string {
  const time = new Date(record.timestamp).toISOString().slice(11, 23);
  return `${time} ${LEVELS[record.level]} ${where(record)}: ${messageText(record)}\n`;
}

/** Formats a record for journald: `<6>manager: message` (journald adds the time). */
export function formatJournalRecord(record: LogRecord): string {
  return `<${PRIORITY[record.level]}>${where(record)}: ${messageText(record).replaceAll("\n", " ")}\n`;
}

/**
 * Formats a record as one JSON line: `time` (ISO-8601), `level`, `logger`,
 * `message` (rendered) and the structured `properties`.
 */
export function formatJsonRecord(record: LogRecord): string {
  const properties: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(record.properties)) {
    properties[k] = v instanceof Error ? `${v.name}: ${v.message}` : typeof v === "bigint" ? String(v) : v;
  }
  const base = {
    time: new Date(record.timestamp).toISOString(),
    level: record.level,
    logger: where(record),
    message: messageText(record),
  };
  let line: string;
  try {
    line = JSON.stringify({ ...base, properties });
  } catch {
    line = JSON.stringify(base); // a property that cannot be serialised (a cycle)
  }
  return line + "\n";
}

const FORMATTERS: Record<LogFormat, (record: LogRecord) => string> = {
  text: formatRecord,
  json: formatJsonRecord,
  journal: formatJournalRecord,
};

/**
 * Whether stderr is the journal's stream: systemd sets `JOURNAL_STREAM` to
 * `DEV:INODE` of the socket it connects to stderr (a child that inherits the
 * variable but not the socket is not under journald).
 */
export function stderrIsJournal(): boolean {
  const stream = Deno.env.get("JOURNAL_STREAM");
  if (!stream) return false;
  try {
    const st = Deno.statSync("/proc/self/fd/2");
    return `${st.dev}:${st.ino}` === stream;
  } catch {
    // Deno grants /proc/self only with --allow-all: ask stat(1) about the
    // stderr it inherits instead (once, at start-up, and only under systemd).
  }
  try {
    const out = processOutputSync("stat", { args: ["-L", "-c", "%d:%i", "/proc/self/fd/2"], stderr: "inherit" });
    if (out.success) return new TextDecoder().decode(out.stdout).trim() === stream;
  } catch {
    // No stat(1) or no permission to run it.
  }
  return !Deno.stderr.isTerminal();
}

/**
 * The logging options an entry point's flags ask for: `--log-level`,
 * `--log-format`, and `-q`/`-v` as short for warning/debug.
 *
 * @throws {VicoError} `USAGE` for an unknown level or format.
 */
export function loggingFromFlags(flags: {
  quiet?: boolean;
  verbose?: boolean;
  "log-level"?: string;
  "log-format"?: string;
}): LoggingOptions {
  const level = flags["log-level"] ?? (flags.quiet ? "warning" : flags.verbose ? "debug" : "info");
  if (!LOG_LEVELS.includes(level as LogLevel)) {
    throw new VicoError("USAGE", `--log-level must be one of ${LOG_LEVELS.join(", ")}, got ${JSON.stringify(level)}`);
  }
  const format = flags["log-format"];
  if (format !== undefined && format !== "text" && format !== "json" && format !== "journal") {
    throw new VicoError("USAGE", `--log-format must be text, json or journal, got ${JSON.stringify(format)}`);
  }
  return { level: level as LogLevel, format };
}

/** Options for {@linkcode setupLogging}. */
export interface LoggingOptions {
  /** Lowest level written. @default {"info"} */
  level?: LogLevel;
  /** Line format. @default {"journal" under journald, else "text"} */
  format?: LogFormat;
}

/** Sends vico's logs to stderr. Call once from an entry point. */
export async function setupLogging(options: LoggingOptions = {}): Promise<void> {
  const format = FORMATTERS[options.format ?? (stderrIsJournal() ? "journal" : "text")];
  const stderrSink = (record: LogRecord): void => {
    statusLine?.clear();
    writeStderr(format(record));
    statusLine?.redraw();
  };
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

/**
 * A log line that a flood could repeat (a refused peer, a runner that joins
 * and leaves): written at most `limit` times per `windowMs`, then counted;
 * the count is reported once with the next line let through.
 *
 * @example
 * ```ts
 * import { logger, RateLimitedLog } from "./log.ts";
 * const departures = new RateLimitedLog(logger("manager"), "departed runner(s)");
 * departures.log("info", "Runner {host} left", { host: "node7" });
 * ```
 */
export class RateLimitedLog {
  readonly #log: Logger;
  readonly #what: string;
  readonly #gate: LogRateLimit;

  /**
   * @param log Where the lines go.
   * @param what What the suppressed lines were about, for the count (`"refused connection(s)"`).
   * @param limit Lines let through per window.
   * @param windowMs Window length.
   */
  constructor(log: Logger, what: string, limit = 5, windowMs = 10_000) {
    this.#log = log;
    this.#what = what;
    this.#gate = new LogRateLimit(limit, windowMs);
  }

  /** Writes `message` at `level` unless this window's allowance is spent. */
  log(
    level: "debug" | "info" | "warn" | "error",
    message: string,
    properties: Record<string, unknown>,
    now = Date.now(),
  ): void {
    const gate = this.#gate.allow(now);
    if (gate.suppressed > 0) {
      this.#log[level]("{n} more {what} were not logged", { n: gate.suppressed, what: this.#what });
    }
    if (gate.log) this.#log[level](message, properties);
  }
}
