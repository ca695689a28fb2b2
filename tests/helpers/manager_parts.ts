/**
 * The parts of a manager that sessions run in, wired as `Manager.start`
 * wires them: the results store, the queue, the ledger, the scheduler and
 * the recorder (which records the jobs the scheduler gives up as lost).
 */

import { jobKey } from "../../manager/jobs/job_key.ts";
import { identityOf, type JobList } from "../../manager/jobs/job_list.ts";
import { JobQueue } from "../../manager/jobs/job_queue.ts";
import { Ledger } from "../../manager/results/ledger.ts";
import { ResultRecorder } from "../../manager/results/result_recorder.ts";
import { ResultsStore } from "../../manager/results/results_store.ts";
import { Scheduler } from "../../manager/scheduling/scheduler.ts";

/** The parts for `jobs`, with the results in `dir`, for run `run1`. */
export async function managerParts(dir: string, jobs: JobList, options: { durable: boolean; commitWindowMs?: number }) {
  const keyOf = (job: number) => jobKey(identityOf(jobs, job), jobs.occurrences[job]);
  const results = await ResultsStore.open(dir, options);
  const queue = new JobQueue(jobs.commands.length, { classOf: jobs.classOf, classes: jobs.classes.length });
  const ledger = new Ledger(jobs.commands.length, "run1");
  const late: { recorder?: ResultRecorder } = {};
  const scheduler = new Scheduler(queue, jobs.classes, {
    onLost: (job, reason, link) => void late.recorder!.lost(job, reason, link),
  }, { keyOf, ledger });
  const recorder = late.recorder = new ResultRecorder(scheduler, results, jobs, keyOf);
  return { keyOf, results, queue, ledger, scheduler, recorder };
}
