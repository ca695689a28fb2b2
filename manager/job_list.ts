/**
 * Loading a job list: one shell command line per line. Blank lines and lines
 * whose first non-blank character is `#` are skipped. A line the text
 * protocol cannot carry is refused with its line number before anything
 * runs.
 *
 * @module
 */

import { JobListError } from "../protocol/errors.ts";
import { DEFAULT_LIMITS } from "../protocol/limits.ts";
import { whyNotCarriable } from "../protocol/text_codec.ts";

/** The jobs of one run, in list order. Job `i` is `commands[i]`, from line `lines[i]`. */
export interface JobList {
  /** Where the list came from: a path, or `-` for standard input. */
  readonly source: string;
  /** Command line of each job. */
  readonly commands: readonly string[];
  /** 1-based line number of each job in the source. */
  readonly lines: Uint32Array;
  /** For each job, how many identical commands precede it, plus one. */
  readonly occurrences: Uint32Array;
}

/** Options for {@linkcode parseJobList}. */
export interface ParseJobListOptions {
  /** Where the text came from (for messages). @default {"-"} */
  source?: string;
  /** The protocol line limit jobs must fit in. */
  maxLineBytes?: number;
}

const fatalDecoder = new TextDecoder("utf-8", { fatal: true });

/**
 * Parses a job list from its raw bytes.
 *
 * @example
 * ```ts
 * import { parseJobList } from "./job_list.ts";
 * const list = parseJobList(new TextEncoder().encode("# demo\necho a\n\necho b\n"));
 * console.assert(list.commands.length === 2 && list.lines[1] === 4);
 * ```
 *
 * @throws {JobListError} Naming the first line that cannot be served.
 */
export function parseJobList(bytes: Uint8Array, options: ParseJobListOptions = {}): JobList {
  const maxLine = options.maxLineBytes ?? DEFAULT_LIMITS.maxLineBytes;
  let text: string;
  try {
    text = fatalDecoder.decode(bytes);
  } catch {
    throw new JobListError(firstInvalidUtf8Line(bytes), "not valid UTF-8");
  }
  const commands: string[] = [];
  const lineNumbers: number[] = [];
  const seen = new Map<string, number>();
  const occurrences: number[] = [];
  let lineNo = 0;
  let at = 0;
  while (at < text.length) {
    lineNo++;
    let nl = text.indexOf("\n", at);
    if (nl === -1) nl = text.length;
    let line = text.slice(at, nl);
    at = nl + 1;
    if (line.endsWith("\r")) line = line.slice(0, -1);
    const trimmed = line.trimStart();
    if (trimmed.length === 0 || trimmed[0] === "#") continue;
    const why = whyNotCarriable(line, maxLine);
    if (why !== undefined) throw new JobListError(lineNo, why);
    commands.push(line);
    lineNumbers.push(lineNo);
    const n = (seen.get(line) ?? 0) + 1;
    seen.set(line, n);
    occurrences.push(n);
  }
  return {
    source: options.source ?? "-",
    commands,
    lines: Uint32Array.from(lineNumbers),
    occurrences: Uint32Array.from(occurrences),
  };
}

/** Reads and parses a job list from a file, or from standard input for `-`. */
export async function readJobList(path: string, options: ParseJobListOptions = {}): Promise<JobList> {
  const bytes = path === "-" ? await readAll(Deno.stdin.readable) : await Deno.readFile(path);
  return parseJobList(bytes, { ...options, source: path });
}

async function readAll(stream: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

function firstInvalidUtf8Line(bytes: Uint8Array): number {
  let line = 1;
  let start = 0;
  while (start <= bytes.length) {
    let end = bytes.indexOf(0x0a, start);
    if (end === -1) end = bytes.length;
    try {
      fatalDecoder.decode(bytes.subarray(start, end));
    } catch {
      return line;
    }
    line++;
    start = end + 1;
  }
  return line;
}
