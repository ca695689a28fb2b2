/**
 * A template run as the job list the manager serves today: each generated
 * command line becomes one plain job of a {@linkcode JobList}, through
 * {@linkcode parseJobList}, so keys, occurrences and classes are what a
 * text job list with the same lines would get.
 *
 * Job `i` of the list has `lines[i]` = its sequence number (`{#}`), so a
 * message naming a line names the job.
 *
 * @module
 */

import { type JobList, parseJobList } from "../manager/jobs/job_list.ts";
import { VicoError } from "../core/errors.ts";
import { DEFAULT_LIMITS } from "../core/limits.ts";
import { whyNotCarriable } from "../protocol/text_codec.ts";
import {
  compileTemplate,
  expandJobs,
  parseTemplateArgs,
  readSources,
  type RefusedLine,
  type SourceInput,
  type SourceSpec,
  type TemplateJob,
  type TemplateRun,
} from "./command_template.ts";

/** A template run read from the command line: ready to expand. */
export interface LoadedTemplateRun {
  /** The template and its sources. */
  readonly run: TemplateRun;
  /** The sources as written (to name them in messages). */
  readonly specs: readonly SourceSpec[];
  /** Source lines that are not arguments (not UTF-8, too long), to report. */
  readonly refused: readonly RefusedLine[];
}

/**
 * Parses `COMMAND [ARG...] ::: ...` (the words after the manager's options),
 * reads its sources and compiles the template.
 *
 * @throws {VicoError} `USAGE` for a malformed template or sources.
 */
export async function loadTemplateRun(words: readonly string[], input: SourceInput): Promise<LoadedTemplateRun> {
  const args = parseTemplateArgs(words);
  const { sources, refused } = await readSources(args.sources, input);
  return { run: { template: compileTemplate(args.command, sources.length), sources }, specs: args.sources, refused };
}

/** Options for {@linkcode templateJobList}. */
export interface TemplateJobListOptions {
  /** The protocol line limit each command must fit in. @default {DEFAULT_LIMITS.maxLineBytes} */
  readonly maxLineBytes?: number;
  /** Where the list came from, for messages. @default {"template"} */
  readonly source?: string;
}

/** A template run's job list, with each job's arguments. */
export interface TemplateJobList {
  /** The job list to serve. */
  readonly list: JobList;
  /** Every generated job by sequence number: list job `i` is `jobs[list.lines[i] - 1]`. */
  readonly jobs: readonly TemplateJob[];
  /** Jobs left out, each alone (too long for a protocol line, a line break from an argument): not run, the rest are. */
  readonly refused: readonly RefusedTemplateJob[];
}

/** A generated job that is not served while the rest are. */
export interface RefusedTemplateJob {
  /** Its sequence number (`{#}`). */
  readonly seq: number;
  /** Where its arguments came from, e.g. `source 1 line 7`. */
  readonly origin: string;
  /** Why. */
  readonly reason: string;
}

/** Names where a job's arguments came from, e.g. `source 2 line 7`. */
function originOf(job: TemplateJob, specs?: readonly SourceSpec[]): string {
  return job.args.map((_, i) => {
    const spec = specs?.[i];
    const kind = spec === undefined || spec.kind === "args" ? "argument" : "line";
    return `source ${i + 1} ${kind} ${job.argLines[i]}`;
  }).join(", ");
}

/**
 * The job list of a template run. With a bare template (no command words),
 * a blank argument line is no job, and a line starting with `#` is a
 * comment, as in a job list read from standard input today.
 *
 * @example
 * ```ts
 * import { loadTemplateRun, templateJobList } from "./template_job_list.ts";
 * const { run } = await loadTemplateRun(["echo", "{1}-{2}", ":::", "a", "b", ":::", "1", "2"], {});
 * const { list } = templateJobList(run);
 * console.assert(list.commands.join(",") === "echo a-1,echo a-2,echo b-1,echo b-2");
 * ```
 * @throws {VicoError} `JOB_LIST_INVALID` naming the first job that cannot be served
 *   (a line break from the template, a reserved protocol word) and where its arguments came from; a job
 *   that is only too long is left out and named in `refused` instead.
 */
export function templateJobList(
  run: TemplateRun,
  options: TemplateJobListOptions = {},
  specs?: readonly SourceSpec[],
): TemplateJobList {
  const maxLine = options.maxLineBytes ?? DEFAULT_LIMITS.maxLineBytes;
  const jobs: TemplateJob[] = [];
  const lines: string[] = [];
  const refused: RefusedTemplateJob[] = [];
  // A line break in the template's own text is in every job: that refuses the run. One that an argument brings
  // (a carriage return inside a `:::` word) is that job's alone.
  const templateBreaks = run.template.parts.some((p) => p.kind === "text" && /[\r\n]/.test(p.text));
  for (const job of expandJobs(run)) {
    jobs.push(job);
    const blank = run.template.bare && (job.command.trim() === "" || job.command.trimStart().startsWith("#"));
    // What no line limit would let through refuses the run; a command merely too long is left out alone.
    const why = blank ? undefined : whyNotCarriable(job.command, Infinity);
    const argumentBreak = why !== undefined && !templateBreaks && /[\r\n]/.test(job.command) &&
      whyNotCarriable(job.command.replace(/[\r\n]/g, " "), Infinity) === undefined;
    if (why !== undefined && !argumentBreak) {
      throw new VicoError("JOB_LIST_INVALID", `job ${job.seq} (${originOf(job, specs)}): ${why}`);
    }
    // Left out alone: too long for a protocol line, or a line break an argument brought.
    const alone = blank ? undefined : argumentBreak ? why : whyNotCarriable(job.command, maxLine);
    if (alone !== undefined) refused.push({ seq: job.seq, origin: originOf(job, specs), reason: alone });
    // One command per line: line N of the text is job N (a refused job's line is blank).
    lines.push(blank || alone !== undefined ? "" : job.command);
  }
  const text = new TextEncoder().encode(lines.join("\n"));
  const list = parseJobList(text, { source: options.source ?? "template", maxLineBytes: maxLine, format: "text" });
  return { list, jobs, refused };
}
