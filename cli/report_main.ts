/**
 * `manager report RESULTS_DIR`: the subcommand's flags, usage text and main.
 * The report itself is `manager/observe/report.ts`.
 *
 * @module
 */

import { VicoError } from "../core/errors.ts";
import { ExitCode } from "./exit_code.ts";
import { parseArgs } from "node:util";
import { complain, intFlag } from "./flags.ts";
import { JOURNAL_FILE } from "../manager/results/results_store.ts";
import { DEFAULT_TIMELINE_LIMIT, digestResults, formatReport, type JournalDigest } from "../manager/observe/report.ts";
import { renderStatusPage } from "../manager/observe/status_page.ts";

/** `manager report --help`. */
export const REPORT_USAGE = `Usage: manager report RESULTS_DIR [--html FILE] [--json] [--timeline-jobs N]

Summarizes a run from its results journal: jobs ok, failed, timed out
(stopped by --timeout) and lost,
retried attempts, wall time, jobs and busy time per host, the exit status
distribution and the slowest jobs. Read-only; works on a finished run or
one still going.

      --html FILE      Also write the status page with this run embedded: a
                       Gantt chart of every job by host and lane, and
                       throughput over time. One self-contained file (no
                       network needed to view it).
      --json           Print the summary as JSON instead of text.
      --timeline-jobs N
                       Jobs the timeline keeps: the most recent N.
                       Default ${DEFAULT_TIMELINE_LIMIT}.
  -h, --help           Show this help.

Exit status: 0, or 2 when the directory has no readable journal.
`;

/** `manager report RESULTS_DIR [--html FILE] [--json]`; returns the exit code. */
export async function reportMain(args: string[]): Promise<number> {
  let parsed;
  let limit: number;
  try {
    parsed = parseArgs({
      args,
      options: {
        html: { type: "string" },
        json: { type: "boolean" },
        "timeline-jobs": { type: "string" },
        help: { type: "boolean", short: "h" },
      },
      strict: true,
      allowPositionals: true,
    });
    limit = intFlag("timeline-jobs", parsed.values["timeline-jobs"], DEFAULT_TIMELINE_LIMIT, 1);
  } catch (err) {
    return complain("manager report", `${(err as Error).message}\n\n${REPORT_USAGE}`, ExitCode.USAGE);
  }
  if (parsed.values.help) {
    console.log(REPORT_USAGE);
    return ExitCode.OK;
  }
  if (parsed.positionals.length !== 1) {
    return complain("manager report", `expected one RESULTS_DIR\n\n${REPORT_USAGE}`, ExitCode.USAGE);
  }
  const dir = parsed.positionals[0];
  let digest: JournalDigest;
  try {
    digest = await digestResults(dir, limit);
  } catch (err) {
    // A damaged journal is not the user's mistake: it fails like a run that went wrong.
    if (err instanceof VicoError && err.code === "JOURNAL_DAMAGED") {
      return complain("manager report", `cannot read ${dir}: ${err.message}`, ExitCode.FAILED);
    }
    const why = err instanceof Deno.errors.NotFound ? `no ${JOURNAL_FILE} there` : (err as Error).message;
    return complain("manager report", `cannot read ${dir}: ${why}`, ExitCode.USAGE);
  }
  const report = digest.report();
  if (parsed.values.json) console.log(JSON.stringify(report, null, 2));
  else console.log(formatReport(report, dir).trimEnd());
  if (parsed.values.html !== undefined) {
    const html = renderStatusPage({ resultsDir: dir, report, timeline: digest.timeline() });
    try {
      await Deno.writeTextFile(parsed.values.html, html);
    } catch (err) {
      return complain(
        "manager report",
        `cannot write ${parsed.values.html}: ${(err as Error).message}`,
        ExitCode.USAGE,
      );
    }
    if (!parsed.values.json) console.log(`  timeline: ${parsed.values.html}`);
  }
  return ExitCode.OK;
}
