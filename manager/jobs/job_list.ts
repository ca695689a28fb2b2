/**
 * Loading a job list, in one of two formats:
 *
 * - **text**: one shell command line per line. Blank lines and lines whose
 *   first non-blank character is `#` are skipped.
 * - **jsonl**: one task per line, a JSON object (see `task_bundle.ts`);
 *   blank and `#` lines are skipped too.
 *
 * A line that is not valid UTF-8, or a command too long for a text
 * protocol line (64 KiB), is refused alone: it is left out of the list,
 * named with its line number in {@linkcode JobList.refused}, and the rest
 * runs. Any other job that cannot be served (a word the protocol reserves,
 * a line break, a NUL, a malformed task) refuses the whole list, with its
 * line number, before anything runs.
 *
 * @module
 */

import { dirname, extname } from "node:path";
import { JobListError } from "../../core/errors.ts";
import { DEFAULT_LIMITS } from "../../core/limits.ts";
import { whyNotCarriable } from "../../protocol/text_codec.ts";
import { commandTask, parseTaskSpec, type TaskBundle } from "./task_bundle.ts";

/** What a runner must offer to take a job. Jobs with equal needs share a class. */
export interface JobClass {
  /** Modules a binary node must announce. */
  readonly modules: readonly string[];
  /** Only binary nodes can carry it (files, several runs, returns, modules, gangs, timeouts). */
  readonly binaryOnly: boolean;
  /** Nodes it runs on together (gang size). */
  readonly nodes: number;
}

/** The class of plain command lines: any runner can take them. */
export const PLAIN_CLASS: JobClass = Object.freeze({ modules: Object.freeze([]), binaryOnly: false, nodes: 1 });

/** The jobs of one run, in list order. Job `i` is described by index `i` of each array. */
export interface JobList {
  /** Where the list came from: a path, or `-` for standard input. */
  readonly source: string;
  /** The list's format. */
  readonly format: "text" | "jsonl";
  /** Each job's command line (what a text runner runs), or its label for a bundle. */
  readonly commands: readonly string[];
  /** 1-based line number of each job in the source. */
  readonly lines: Uint32Array;
  /** For each job, how many jobs with the same identity precede it, plus one. */
  readonly occurrences: Uint32Array;
  /** What each job's key hashes, when it is not its command (bundles). */
  readonly identities?: readonly string[];
  /** Each job's task bundle, or `undefined` for a plain command line. */
  readonly bundles?: readonly (TaskBundle | undefined)[];
  /** The distinct classes of job in this list. */
  readonly classes: readonly JobClass[];
  /** Index into `classes` of each job. */
  readonly classOf: Uint16Array;
  /** Lines left out of the list, each alone (not valid UTF-8, too long for a protocol line); absent: none. */
  readonly refused?: readonly RefusedJob[];
}

/** A line of a job list that is not served while the rest of the list is. */
export interface RefusedJob {
  /** Its 1-based line number in the source. */
  readonly line: number;
  /** Why. */
  readonly reason: string;
}

/** Options for {@linkcode parseJobList} and {@linkcode readJobList}. */
export interface ParseJobListOptions {
  /** Where the text came from (for messages). @default {"-"} */
  source?: string;
  /** The protocol line limit plain jobs must fit in. */
  maxLineBytes?: number;
  /** Largest input file a task may stage. */
  maxFileBytes?: number;
  /** Force a format instead of deciding by the file's extension. */
  format?: "text" | "jsonl";
  /** Directory relative input paths of tasks resolve against. @default {the list's directory} */
  baseDir?: string;
}

const fatalDecoder = new TextDecoder("utf-8", { fatal: true });

/** The task a binary node runs for job `job`. */
export function taskOf(list: JobList, job: number): TaskBundle {
  return list.bundles?.[job] ?? commandTask(list.commands[job]);
}

/** The string job `job`'s key is a hash of. */
export function identityOf(list: JobList, job: number): string {
  return list.identities?.[job] ?? list.commands[job];
}

/**
 * Calls `fn` for each job line (not blank, not a comment) with its 1-based
 * number, and `refuse` for each line that is not valid UTF-8.
 */
function forEachJobLine(
  bytes: Uint8Array,
  fn: (line: string, lineNo: number) => void,
  refuse: (job: RefusedJob) => void,
): void {
  let text: string;
  try {
    text = fatalDecoder.decode(bytes);
  } catch {
    text = decodeLineByLine(bytes, refuse);
  }
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
    fn(line, lineNo);
  }
}

/** Counts occurrences of equal identities, in list order. */
function occurrencesOf(identities: readonly string[]): Uint32Array {
  const seen = new Map<string, number>();
  const out = new Uint32Array(identities.length);
  identities.forEach((id, i) => {
    const n = (seen.get(id) ?? 0) + 1;
    seen.set(id, n);
    out[i] = n;
  });
  return out;
}

/**
 * Parses a text job list: one shell command line per line.
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
  const commands: string[] = [];
  const lineNumbers: number[] = [];
  const refused: RefusedJob[] = [];
  forEachJobLine(bytes, (line, lineNo) => {
    // What no line limit would let through refuses the list; a line merely too long is left out alone.
    const why = whyNotCarriable(line, Infinity);
    if (why !== undefined) throw new JobListError(lineNo, why);
    const tooLong = whyNotCarriable(line, maxLine);
    if (tooLong !== undefined) {
      refused.push({ line: lineNo, reason: tooLong });
      return;
    }
    commands.push(line);
    lineNumbers.push(lineNo);
  }, (job) => refused.push(job));
  return {
    source: options.source ?? "-",
    format: "text",
    commands,
    lines: Uint32Array.from(lineNumbers),
    occurrences: occurrencesOf(commands),
    classes: [PLAIN_CLASS],
    classOf: new Uint16Array(commands.length),
    ...(refused.length > 0 ? { refused } : {}),
  };
}

/**
 * Parses a JSON Lines task list. Input files are checked and hashed.
 *
 * @throws {JobListError} Naming the first line that cannot be served.
 */
export async function parseTaskList(bytes: Uint8Array, options: ParseJobListOptions = {}): Promise<JobList> {
  const entries: [string, number][] = [];
  const refused: RefusedJob[] = [];
  forEachJobLine(bytes, (line, lineNo) => entries.push([line, lineNo]), (job) => refused.push(job));
  const commands: string[] = [];
  const identities: string[] = [];
  const bundles: (TaskBundle | undefined)[] = [];
  const classes: JobClass[] = [PLAIN_CLASS];
  const classIndex = new Map<string, number>([[classKey(PLAIN_CLASS), 0]]);
  const classOf = new Uint16Array(entries.length);
  const digests = new Map<string, string>();
  for (const [i, [line, lineNo]] of entries.entries()) {
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch (err) {
      throw new JobListError(lineNo, `not JSON: ${(err as Error).message}`);
    }
    let parsed;
    try {
      parsed = await parseTaskSpec(value, {
        baseDir: options.baseDir ?? ".",
        maxLineBytes: options.maxLineBytes ?? DEFAULT_LIMITS.maxLineBytes,
        maxFileBytes: options.maxFileBytes ?? DEFAULT_LIMITS.maxFileBytes,
        digests,
      });
    } catch (err) {
      throw new JobListError(lineNo, (err as Error).message);
    }
    const { bundle, textCommand, identity } = parsed;
    commands.push(textCommand ?? bundle.label);
    identities.push(identity);
    bundles.push(textCommand === undefined ? bundle : undefined);
    const cls: JobClass = textCommand !== undefined
      ? PLAIN_CLASS
      : { modules: bundle.modules, binaryOnly: true, nodes: bundle.nodes };
    const key = classKey(cls);
    let index = classIndex.get(key);
    if (index === undefined) {
      index = classes.push(cls) - 1;
      if (index > 0xffff) throw new JobListError(lineNo, "more than 65535 distinct module sets and gang sizes");
      classIndex.set(key, index);
    }
    classOf[i] = index;
  }
  return {
    source: options.source ?? "-",
    format: "jsonl",
    commands,
    lines: Uint32Array.from(entries.map(([, n]) => n)),
    occurrences: occurrencesOf(identities),
    identities,
    bundles,
    classes,
    classOf,
    ...(refused.length > 0 ? { refused } : {}),
  };
}

function classKey(c: JobClass): string {
  return `${c.binaryOnly ? "b" : "t"}|${c.nodes}|${c.modules.join(",")}`;
}

/** The format a job file's name implies: `.jsonl`/`.ndjson` are task lists. */
export function formatOf(path: string): "text" | "jsonl" {
  return [".jsonl", ".ndjson"].includes(extname(path).toLowerCase()) ? "jsonl" : "text";
}

/** Reads and parses a job list from a file, or from standard input for `-`. */
export async function readJobList(path: string, options: ParseJobListOptions = {}): Promise<JobList> {
  const bytes = path === "-" ? await readAll(Deno.stdin.readable) : await Deno.readFile(path);
  const format = options.format ?? (path === "-" ? "text" : formatOf(path));
  const opts = { ...options, source: path, baseDir: options.baseDir ?? (path === "-" ? "." : dirname(path)) };
  return format === "jsonl" ? await parseTaskList(bytes, opts) : parseJobList(bytes, opts);
}

async function readAll(stream: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/** The text of `bytes` with each line that is not valid UTF-8 refused and left blank (so line numbers hold). */
function decodeLineByLine(bytes: Uint8Array, refuse: (job: RefusedJob) => void): string {
  const lines: string[] = [];
  let start = 0;
  while (start <= bytes.length) {
    let end = bytes.indexOf(0x0a, start);
    if (end === -1) end = bytes.length;
    try {
      lines.push(fatalDecoder.decode(bytes.subarray(start, end)));
    } catch {
      refuse({ line: lines.length + 1, reason: "not valid UTF-8" });
      lines.push("");
    }
    start = end + 1;
  }
  return lines.join("\n");
}
