/**
 * `manager verify RESULTS_DIR`: the subcommand's usage text and main. The
 * check itself is `manager/results/verify.ts`.
 *
 * @module
 */

import { ExitCode } from "./exit_code.ts";
import { complain } from "./flags.ts";
import { verifyResults } from "../manager/results/verify.ts";

/** `manager verify --help`. */
export const VERIFY_USAGE = `Usage: manager verify RESULTS_DIR

Re-hashes every output and returned file a results directory's journal
records and reports any file that is missing, of another size, or of another
SHA-256. Exit 0 when everything matches, 1 otherwise, 2 on usage errors.

Example:
  manager verify jobs.results && tar czf jobs-results.tgz jobs.results
`;

/** `manager verify RESULTS_DIR`. */
export async function verifyMain(args: string[]): Promise<number> {
  if (args.includes("--help") || args.includes("-h")) {
    console.log(VERIFY_USAGE);
    return ExitCode.OK;
  }
  if (args.length !== 1) {
    return complain("manager verify", `expected one RESULTS_DIR\n\n${VERIFY_USAGE}`, ExitCode.USAGE);
  }
  let report;
  try {
    report = await verifyResults(args[0]);
  } catch (err) {
    return complain("manager verify", `cannot read ${args[0]}: ${(err as Error).message}`, ExitCode.USAGE);
  }
  for (const p of report.problems) console.log(`${p.path}: ${p.problem} (journal line ${p.line})`);
  if (report.tornTail) {
    console.log("journal: the last record is torn (a crash while writing it); it is dropped on restart");
  }
  const mb = (report.bytes / 1048576).toFixed(1);
  console.log(
    `verify: ${report.records} record(s), ${report.files} file(s), ${mb} MB checked: ` +
      (report.problems.length === 0 ? "all match" : `${report.problems.length} problem(s)`),
  );
  return report.problems.length === 0 ? ExitCode.OK : ExitCode.FAILED;
}
