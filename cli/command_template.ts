/**
 * GNU Parallel-style command templates: `COMMAND [ARG...] ::: A B ::: C D`.
 *
 * Pure: it parses the words after the manager's options, reads argument
 * sources from byte streams it is given (standard input, `:::: FILE`), and
 * generates one shell command line per job, in Parallel's order.
 *
 * - `::: A B` is a source of arguments; several sources combine as their
 *   cartesian product, the first source outermost (`a-1 a-2 b-1 b-2`).
 * - `:::+ X Y` links a source to the previous one: their values pair up
 *   (the shortest of the linked sources decides how many, as Parallel's
 *   `:::+`, which does not wrap).
 * - `:::: FILE...` reads a source from each file, one argument per line
 *   (`-` is standard input); `::::+` links the first file to the previous source.
 * - With no separator at all, the arguments come one per line from standard input.
 *
 * Replacement strings, as Parallel's: `{}` `{.}` `{/}` `{//}` `{/.}` (all
 * arguments of the job, each transformed, joined with a space), `{N}`
 * `{N.}` `{N/}` `{N//}` `{N/.}` for source N (negative N counts from the
 * last), `{#}` the job's sequence number (1-based, in list order). A
 * template without any replacement string gets the arguments appended.
 *
 * **`{%}`, the slot**, is only known when a runner starts the job, so it
 * becomes the shell expansion `${VICO_SLOT}`: a runner exports `VICO_SLOT`
 * (1..N among the jobs running at once on it) and `VICO_SEQ` (the job's
 * sequence number) in each job's environment. The expansion is unquoted
 * shell text, so it works unquoted and inside double quotes, not inside
 * single quotes (`echo '{%}'` prints `${VICO_SLOT}`). A job's identity
 * (its key, for resume) therefore does not depend on its slot.
 *
 * Arguments are substituted shell-quoted ({@linkcode shellQuote}) for any
 * POSIX shell (sh, dash, bash, zsh, ksh; see {@linkcode checkShell}), so
 * spaces, quotes, `$`, backslashes, tabs, Unicode and leading dashes
 * arrive intact. A line break in a `:::` argument splits it into several
 * arguments, as in Parallel (arguments are lines there); a file's or
 * stream's lines are split on `\n` anyway, so no argument holds a line break.
 *
 * The command words themselves are shell text joined with spaces, as in
 * Parallel (`manager 'echo $HOME' ::: x` expands `$HOME` in the job).
 * With no command words at all, each job's arguments, joined with spaces,
 * are its command line.
 *
 * @module
 */

import { VicoError } from "../core/errors.ts";
import { concatBytes } from "../io/concat_bytes.ts";

/** The separators that start a source. */
const SEPARATORS = new Set([":::", ":::+", "::::", "::::+"]);

/** One argument source as written on the command line. */
export type SourceSpec =
  /** `::: A B` (or `:::+`). */
  | { readonly kind: "args"; readonly values: readonly string[]; readonly linked: boolean }
  /** `:::: FILE` (or `::::+`); `-` is standard input. */
  | { readonly kind: "file"; readonly path: string; readonly linked: boolean }
  /** No separator: arguments one per line from standard input. */
  | { readonly kind: "stdin"; readonly linked: false };

/** The words after the manager's options, split into the template and its sources. */
export interface TemplateArgs {
  /** The command words (may be empty: then the arguments are the commands). */
  readonly command: readonly string[];
  /** The sources, in order (at least one). */
  readonly sources: readonly SourceSpec[];
}

/**
 * Splits `COMMAND [ARG...] ::: A B ::: C D` into the command and its sources.
 *
 * @example
 * ```ts
 * import { parseTemplateArgs } from "./command_template.ts";
 * const t = parseTemplateArgs(["echo", "{1}-{2}", ":::", "a", "b", ":::", "1", "2"]);
 * console.assert(t.command.length === 2 && t.sources.length === 2);
 * ```
 * @throws {VicoError} `USAGE`: `:::+` first, `::::` without a file.
 */
export function parseTemplateArgs(words: readonly string[]): TemplateArgs {
  const first = words.findIndex((w) => SEPARATORS.has(w));
  if (first === -1) return { command: [...words], sources: [{ kind: "stdin", linked: false }] };
  const sources: SourceSpec[] = [];
  let at = first;
  while (at < words.length) {
    const sep = words[at];
    let end = at + 1;
    while (end < words.length && !SEPARATORS.has(words[end])) end++;
    const values = words.slice(at + 1, end);
    const linked = sep.endsWith("+");
    if (linked && sources.length === 0) {
      throw new VicoError("USAGE", `${sep} links a source to the previous one, but it comes first`);
    }
    if (sep.startsWith("::::")) {
      if (values.length === 0) throw new VicoError("USAGE", `${sep} needs a file name (or - for standard input)`);
      values.forEach((path, i) => sources.push({ kind: "file", path, linked: linked && i === 0 }));
    } else {
      sources.push({ kind: "args", values, linked });
    }
    at = end;
  }
  return { command: words.slice(0, first), sources };
}

/** A line of a source that is not an argument, with why. */
export interface RefusedLine {
  /** Which source (1-based). */
  readonly source: number;
  /** 1-based line number in that source's file or stream. */
  readonly line: number;
  /** Why it is not an argument. */
  readonly reason: string;
}

/** One source's arguments, read. */
export interface ArgumentSource {
  /** The arguments, in order. */
  readonly values: readonly string[];
  /** For a file or stream, the 1-based line of each argument; for `:::`, the position of its word. */
  readonly lines: readonly number[];
  /** Linked to the previous source (`:::+`). */
  readonly linked: boolean;
}

/** Where {@linkcode readSources} gets bytes from. */
export interface SourceInput {
  /** Standard input (read at most once: a second `-` is an error). */
  readonly stdin?: AsyncIterable<Uint8Array>;
  /** Opens a `:::: FILE`. */
  readonly openFile?: (path: string) => AsyncIterable<Uint8Array>;
  /** Longest line taken as an argument; longer lines are refused. @default {1 MiB} */
  readonly maxLineBytes?: number;
}

/** Sources read, with the lines that could not be arguments. */
export interface ReadSources {
  /** One per {@linkcode SourceSpec}, in order. */
  readonly sources: readonly ArgumentSource[];
  /** Lines skipped (not UTF-8, too long), for the caller to report. */
  readonly refused: readonly RefusedLine[];
}

const DEFAULT_MAX_LINE_BYTES = 1 << 20;

/**
 * Reads every source's arguments. Lines of a file or stream are split on
 * `\n` (a final line without one counts); each line, possibly empty, is one
 * argument, as in Parallel. A line that is not valid UTF-8 or is longer than
 * `maxLineBytes` is refused with its line number and the rest are kept;
 * a long line is skipped without being held in memory.
 *
 * @throws {VicoError} `USAGE` when standard input is wanted twice or is not given.
 */
export async function readSources(specs: readonly SourceSpec[], input: SourceInput): Promise<ReadSources> {
  const refused: RefusedLine[] = [];
  const sources: ArgumentSource[] = [];
  let stdinUsed = false;
  for (const [i, spec] of specs.entries()) {
    if (spec.kind === "args") {
      // As in Parallel, a line break in a `:::` argument makes several arguments.
      const values: string[] = [];
      const lines: number[] = [];
      spec.values.forEach((value, j) => {
        for (const part of value.split("\n")) {
          values.push(part);
          lines.push(j + 1);
        }
      });
      sources.push({ values, lines, linked: spec.linked });
      continue;
    }
    let stream: AsyncIterable<Uint8Array>;
    if (spec.kind === "stdin" || spec.path === "-") {
      if (input.stdin === undefined) throw new VicoError("USAGE", "arguments from standard input, but none is given");
      if (stdinUsed) throw new VicoError("USAGE", "standard input can be only one source of arguments");
      stdinUsed = true;
      stream = input.stdin;
    } else {
      if (input.openFile === undefined) throw new VicoError("USAGE", `cannot read ${spec.path}`);
      stream = input.openFile(spec.path);
    }
    const values: string[] = [];
    const lines: number[] = [];
    for await (const item of readLines(stream, input.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES)) {
      if (item.text === undefined) refused.push({ source: i + 1, line: item.line, reason: item.reason });
      else {
        values.push(item.text);
        lines.push(item.line);
      }
    }
    sources.push({ values, lines, linked: spec.linked });
  }
  return { sources, refused };
}

type LineItem = { line: number; text: string; reason?: undefined } | { line: number; text?: undefined; reason: string };

const fatalDecoder = new TextDecoder("utf-8", { fatal: true });

/** Splits a byte stream into lines, bounded by `maxBytes` per line. */
async function* readLines(stream: AsyncIterable<Uint8Array>, maxBytes: number): AsyncGenerator<LineItem> {
  let parts: Uint8Array[] = [];
  let size = 0;
  let tooLong = false;
  let line = 0;
  let sawBytes = false;
  const finish = (): LineItem => {
    line++;
    if (tooLong) return { line, reason: `longer than ${maxBytes} bytes` };
    const bytes = concatBytes(parts);
    try {
      // A CRLF line ending (a list from Windows) ends the line, as in a job list.
      const text = fatalDecoder.decode(bytes);
      return { line, text: text.endsWith("\r") ? text.slice(0, -1) : text };
    } catch {
      return { line, reason: "not valid UTF-8" };
    }
  };
  for await (const chunk of stream) {
    let at = 0;
    while (at < chunk.length) {
      sawBytes = true;
      const nl = chunk.indexOf(0x0a, at);
      const end = nl === -1 ? chunk.length : nl;
      if (!tooLong) {
        if (size + (end - at) > maxBytes) {
          tooLong = true;
          parts = [];
          size = 0;
        } else {
          parts.push(chunk.slice(at, end));
          size += end - at;
        }
      }
      if (nl === -1) break;
      yield finish();
      parts = [];
      size = 0;
      tooLong = false;
      sawBytes = false;
      at = nl + 1;
    }
  }
  if (sawBytes) yield finish();
}

/** How a replacement string transforms an argument. */
export type Transform = "" | "." | "/" | "//" | "/.";

/** A piece of a compiled template. */
type Part =
  | { readonly kind: "text"; readonly text: string }
  | { readonly kind: "arg"; readonly source: number | undefined; readonly transform: Transform }
  | { readonly kind: "seq" }
  | { readonly kind: "slot" };

/** A command template, compiled for a number of sources. */
export interface CommandTemplate {
  /** The pieces, in order. */
  readonly parts: readonly Part[];
  /** Whether the template has no command words (the arguments are the commands). */
  readonly bare: boolean;
}

/** The shell text `{%}` becomes: the runner exports the slot under this name. */
export const SLOT_EXPANSION = "${VICO_SLOT}";
/** The environment variable a runner sets to the job's slot (1..N on the runner). */
export const SLOT_VARIABLE = "VICO_SLOT";
/** The environment variable a runner sets to the job's sequence number. */
export const SEQ_VARIABLE = "VICO_SEQ";

const REPLACEMENT = /\{(-?[0-9]+)?(\/\/|\/\.|\/|\.)?\}|\{#\}|\{%\}/g;

/**
 * Compiles command words into a template for `sourceCount` sources. The
 * words are joined with spaces; a template with no replacement string gets
 * ` {}` appended.
 *
 * @example
 * ```ts
 * import { compileTemplate, renderCommand } from "./command_template.ts";
 * const t = compileTemplate(["gzip", "-9"], 1);
 * console.assert(renderCommand(t, ["it's.txt"], 1) === "gzip -9 'it'\\''s.txt'");
 * ```
 * @throws {VicoError} `USAGE` when `{N}` names a source that does not exist.
 */
export function compileTemplate(words: readonly string[], sourceCount: number): CommandTemplate {
  if (words.length === 0) return { parts: [], bare: true };
  const text = words.join(" ");
  const parts: Part[] = [];
  let at = 0;
  for (const m of text.matchAll(REPLACEMENT)) {
    if (m.index > at) parts.push({ kind: "text", text: text.slice(at, m.index) });
    at = m.index + m[0].length;
    if (m[0] === "{#}") parts.push({ kind: "seq" });
    else if (m[0] === "{%}") parts.push({ kind: "slot" });
    else {
      let source: number | undefined;
      if (m[1] !== undefined) {
        const n = Number(m[1]);
        source = n < 0 ? sourceCount + n + 1 : n;
        if (!Number.isSafeInteger(source) || source < 1 || source > sourceCount) {
          const have = sourceCount === 1 ? "there is 1 source" : `there are ${sourceCount} sources`;
          throw new VicoError("USAGE", `${m[0]} names source ${m[1]}, but ${have} of arguments`);
        }
      }
      parts.push({ kind: "arg", source, transform: (m[2] ?? "") as Transform });
    }
  }
  if (at < text.length) parts.push({ kind: "text", text: text.slice(at) });
  if (!parts.some((p) => p.kind !== "text")) {
    parts.push({ kind: "text", text: " " }, { kind: "arg", source: undefined, transform: "" });
  }
  return { parts, bare: false };
}

/**
 * The command line of one job: `args` holds one argument per source, `seq`
 * is its 1-based sequence number.
 */
export function renderCommand(template: CommandTemplate, args: readonly string[], seq: number): string {
  if (template.bare) return args.join(" ");
  let out = "";
  for (const p of template.parts) {
    if (p.kind === "text") out += p.text;
    else if (p.kind === "seq") out += String(seq);
    else if (p.kind === "slot") out += SLOT_EXPANSION;
    else if (p.source !== undefined) out += shellQuote(transform(args[p.source - 1], p.transform));
    else out += args.map((a) => shellQuote(transform(a, p.transform))).join(" ");
  }
  return out;
}

/**
 * Applies a replacement string's transform to an argument, as Parallel does:
 * `.` drops the extension (`s:\.[^/.]*$::`), `/` keeps the basename
 * (`s:.*\/::`), `//` is the dirname (Perl's `File::Basename::dirname`),
 * `/.` the basename without extension.
 *
 * @example
 * ```ts
 * import { transform } from "./command_template.ts";
 * console.assert(transform("a/b.tar.gz", ".") === "a/b.tar" && transform("a/b.tar.gz", "/.") === "b.tar");
 * console.assert(transform("a/", "//") === "." && transform("plain", "//") === ".");
 * ```
 */
export function transform(arg: string, how: Transform): string {
  switch (how) {
    case "":
      return arg;
    case ".":
      return arg.replace(/\.[^/.]*$/, "");
    case "/":
      return basenameOf(arg);
    case "/.":
      return basenameOf(arg).replace(/\.[^/.]*$/, "");
    case "//":
      return dirnameOf(arg);
  }
}

function basenameOf(arg: string): string {
  const slash = arg.lastIndexOf("/");
  return slash === -1 ? arg : arg.slice(slash + 1);
}

/** Perl's File::Basename::dirname on Unix. */
function dirnameOf(path: string): string {
  const stripTrailing = (p: string) => p.replace(/(.)\/*$/s, "$1");
  const split = (p: string): [string, string] => {
    const slash = p.lastIndexOf("/");
    return slash === -1 ? ["./", p] : [p.slice(0, slash + 1), p.slice(slash + 1)];
  };
  let [dir, base] = split(stripTrailing(path));
  dir = stripTrailing(dir);
  if (base.length === 0) {
    [dir, base] = split(dir);
    dir = stripTrailing(dir);
  }
  return dir;
}

/** Characters a word may hold and still go unquoted to any POSIX shell. */
const SAFE_WORD = /^[A-Za-z0-9_@%+,./:-]+$/;
/** Words that mean something to the shell in command position. */
const RESERVED = new Set([
  "case",
  "do",
  "done",
  "elif",
  "else",
  "esac",
  "fi",
  "for",
  "function",
  "if",
  "in",
  "select",
  "then",
  "time",
  "until",
  "while",
]);

/**
 * Quotes `text` as one word for a POSIX shell (sh, dash, bash, zsh, ksh):
 * single quotes, with each `'` written `\'` between quoted runs (never an
 * empty `''` next to a quote, which zsh's RC_QUOTES would read as a quote).
 * Words of plain characters are left as they are.
 *
 * @example
 * ```ts
 * import { shellQuote } from "./command_template.ts";
 * console.assert(shellQuote("a b") === "'a b'" && shellQuote("it's") === "'it'\\''s'" && shellQuote("") === "''");
 * console.assert(shellQuote("x.txt") === "x.txt" && shellQuote("'") === "\\'");
 * ```
 */
export function shellQuote(text: string): string {
  if (SAFE_WORD.test(text) && !RESERVED.has(text)) return text;
  if (text.length === 0) return "''";
  return text.split("'").map((run) => run.length === 0 ? "" : `'${run}'`).join("\\'");
}

/** Shells whose quoting is POSIX's (checked by the basename, version suffixes allowed). */
const POSIX_SHELLS = /^(sh|bash|dash|zsh|ksh|ksh93|mksh|pdksh|oksh|ash|yash|posh|busybox)([0-9.-]*)$/;

/**
 * Checks a `--shell PATH`: it must be an absolute path to a POSIX-family
 * shell, since arguments are quoted for one. (csh, tcsh and fish quote
 * differently and are refused.)
 *
 * @example
 * ```ts
 * import { checkShell } from "./command_template.ts";
 * console.assert(checkShell("/bin/bash") === "/bin/bash");
 * ```
 * @throws {VicoError} `USAGE` naming the flag and the expected form.
 */
export function checkShell(path: string): string {
  const base = path.slice(path.lastIndexOf("/") + 1);
  if (!path.startsWith("/")) {
    throw new VicoError("USAGE", `--shell needs an absolute path such as /bin/bash, got ${JSON.stringify(path)}`);
  }
  if (!POSIX_SHELLS.test(base)) {
    throw new VicoError(
      "USAGE",
      `--shell needs a POSIX shell (sh, dash, bash, zsh, ksh), got ${
        JSON.stringify(path)
      }: arguments are quoted for one`,
    );
  }
  return path;
}

/**
 * Refuses a `--shell` that is not an executable file on this machine: it
 * would fail every job with 127 (a runner would take the whole queue and
 * fail it).
 *
 * @throws {VicoError} `USAGE` naming the path and what is wrong with it.
 */
export function checkShellHere(path: string): void {
  let info: Deno.FileInfo | undefined;
  try {
    info = Deno.statSync(path);
  } catch {
    // Not there, or not to be looked at: said below.
  }
  if (info === undefined || !info.isFile || ((info.mode ?? 0o111) & 0o111) === 0) {
    throw new VicoError(
      "USAGE",
      `--shell ${path}: ${info === undefined ? "no such file" : "not an executable file"} here`,
    );
  }
}

/** One generated job. */
export interface TemplateJob {
  /** 1-based sequence number, in list order (`{#}`, `VICO_SEQ`). */
  readonly seq: number;
  /** One argument per source. */
  readonly args: readonly string[];
  /** The 1-based line (or position) of each argument in its source. */
  readonly argLines: readonly number[];
  /** The shell command line. */
  readonly command: string;
}

/** A template with its sources, ready to generate jobs. */
export interface TemplateRun {
  /** The compiled template. */
  readonly template: CommandTemplate;
  /** The sources, read. */
  readonly sources: readonly ArgumentSource[];
}

/** Groups of linked sources: indexes of the sources in each group, and the group's length. */
function groupsOf(sources: readonly ArgumentSource[]): { members: number[]; length: number }[] {
  const groups: { members: number[]; length: number }[] = [];
  sources.forEach((s, i) => {
    if (s.linked && groups.length > 0) {
      const g = groups[groups.length - 1];
      g.members.push(i);
      g.length = Math.min(g.length, s.values.length);
    } else groups.push({ members: [i], length: s.values.length });
  });
  return groups;
}

/**
 * How many jobs a run has (without generating them).
 *
 * @example
 * ```ts
 * import { jobCount } from "./command_template.ts";
 * const s = (values: string[], linked = false) => ({ values, lines: values.map((_, i) => i + 1), linked });
 * console.assert(jobCount([s(["a", "b"]), s(["1", "2", "3"])]) === 6);
 * console.assert(jobCount([s(["a", "b"]), s(["1", "2", "3"], true)]) === 2);
 * ```
 */
export function jobCount(sources: readonly ArgumentSource[]): number {
  return groupsOf(sources).reduce((n, g) => n * g.length, 1);
}

/**
 * Generates the jobs of a run in Parallel's order: the cartesian product of
 * the groups of linked sources, the first group outermost; within a group,
 * the i-th values of its sources go together.
 */
export function* expandJobs(run: TemplateRun): Generator<TemplateJob> {
  const { sources, template } = run;
  const groups = groupsOf(sources);
  if (groups.some((g) => g.length === 0)) return;
  const index = new Array<number>(groups.length).fill(0);
  let seq = 0;
  while (true) {
    seq++;
    const args = new Array<string>(sources.length);
    const argLines = new Array<number>(sources.length);
    groups.forEach((g, gi) => {
      for (const s of g.members) {
        args[s] = sources[s].values[index[gi]];
        argLines[s] = sources[s].lines[index[gi]];
      }
    });
    yield { seq, args, argLines, command: renderCommand(template, args, seq) };
    // The last group varies fastest.
    let gi = groups.length - 1;
    while (gi >= 0 && ++index[gi] === groups[gi].length) index[gi--] = 0;
    if (gi < 0) return;
  }
}
