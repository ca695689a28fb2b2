/**
 * Resuming a run on a results directory that already holds a journal: which
 * jobs of the (possibly edited) list are settled, which run, which records
 * belong to jobs no longer in the list. Matching is by content key, never
 * by line number, so an edited, reordered or extended list runs exactly the
 * jobs whose keys have no settled record.
 *
 * A default results directory (named after the list, so `jobs.txt` and
 * `jobs.jsonl` share one) is taken only by the list it was made for
 * ({@linkcode checkSameList}).
 *
 * `--resume-failed` first reopens the jobs of the list whose settlement
 * failed ({@linkcode planReopen}, then `ResultsStore.reopen`): a durable
 * `reopen` record per key makes its earlier `job` record a past attempt,
 * and the plan then sees the key unsettled, its attempt numbers going on.
 *
 * @module
 */

import { basename } from "node:path";
import { ResultsDirError } from "../results/results_dir.ts";
import type { AttemptRecord, IssuedRecord, JournalState, ReopenRecord } from "../results/results_store.ts";

/** What a restart on an existing journal will do. */
export interface ResumePlan {
  /** 1 for jobs settled by an earlier run (not run again). */
  readonly settled: Uint8Array;
  /** Jobs settled earlier. */
  readonly skipped: number;
  /** Of those, the ones that failed or were lost. */
  readonly failedEarlier: number;
  /** Jobs to run now. */
  readonly toRun: number;
  /** Of those, jobs an earlier run handed to a runner and never settled. */
  readonly unfinished: number;
  /** Settled records whose job is no longer in the list. */
  readonly gone: number;
  /** Unsettled jobs last held by an identified runner: job → its id. */
  readonly carriedBy: ReadonlyMap<number, { runner: string; host: string }>;
  /** Open hand-outs of unsettled jobs to identified runners (their kept results are still wanted): job → hand-outs. */
  readonly issued: ReadonlyMap<number, readonly IssuedRecord[]>;
  /** The latest attempt number earlier runs gave each job (0: never handed out). */
  readonly attempts: Uint16Array;
  /** Failed attempts earlier runs kept for each job (`--retries`). */
  readonly failures: Uint8Array;
  /** Unsettled jobs whose last attempt is a held suspect (see {@linkcode JournalState.suspects}): job → its record. */
  readonly suspects: ReadonlyMap<number, AttemptRecord>;
}

/**
 * Plans a resume.
 *
 * @param size Jobs in the list.
 * @param previous What the journal recorded.
 * @param keyOf Content key of job `i`.
 */
export function planResume(size: number, previous: JournalState, keyOf: (job: number) => string): ResumePlan {
  const settled = new Uint8Array(size);
  let skipped = 0, failedEarlier = 0, unfinished = 0;
  const carriedBy = new Map<number, { runner: string; host: string }>();
  const issued = new Map<number, readonly IssuedRecord[]>();
  const attempts = new Uint16Array(size);
  const failures = new Uint8Array(size);
  const suspects = new Map<number, AttemptRecord>();
  if (previous.settled.size === 0 && previous.attempts.size === 0) {
    return {
      settled,
      skipped,
      failedEarlier,
      toRun: size,
      unfinished,
      gone: 0,
      carriedBy,
      issued,
      attempts,
      failures,
      suspects,
    };
  }
  const present = new Set<string>();
  for (let job = 0; job < size; job++) {
    const key = keyOf(job);
    present.add(key);
    attempts[job] = Math.min(previous.attempts.get(key) ?? 0, 0xffff);
    const status = previous.settled.get(key);
    if (status !== undefined) {
      settled[job] = 1;
      skipped++;
      if (status !== 0) failedEarlier++;
      continue;
    }
    failures[job] = Math.min(previous.failures.get(key) ?? 0, 0xff);
    const suspect = previous.suspects.get(key);
    if (suspect !== undefined) suspects.set(job, suspect);
    const open = previous.issued.get(key);
    if (open !== undefined && open.length > 0) issued.set(job, open);
    const assigned = previous.assigned.get(key);
    if (assigned !== undefined) {
      carriedBy.set(job, { runner: assigned.runner, host: assigned.host });
    }
    if (attempts[job] > 0) unfinished++;
  }
  let gone = 0;
  for (const key of previous.settled.keys()) if (!present.has(key)) gone++;
  return {
    settled,
    skipped,
    failedEarlier,
    toRun: size - skipped,
    unfinished,
    gone,
    carriedBy,
    issued,
    attempts,
    failures,
    suspects,
  };
}

/** A job to open again, and its `reopen` record (without its time). */
export interface ReopenPlan {
  /** The job. */
  readonly job: number;
  /** What its `reopen` record says. */
  readonly record: Omit<ReopenRecord, "type" | "at">;
}

/**
 * The jobs of the list whose settled record failed (non-zero status, or
 * lost), with the `reopen` records that open them again
 * (`--resume-failed`). Settled records of keys no longer in the list are
 * left alone.
 *
 * @example
 * ```ts
 * import { planReopen } from "./resume.ts";
 * import type { JournalState } from "../results/results_store.ts";
 * const previous = { settled: new Map([["a-1", 0], ["b-1", 2]]), failedSettled: new Map([["b-1",
 *   { key: "b-1", status: 2, host: "h", attempt: 1 }]]) } as unknown as JournalState;
 * console.assert(planReopen(2, previous, (job) => ["a-1", "b-1"][job], () => 1)[0].job === 1);
 * ```
 *
 * @param size Jobs in the list.
 * @param previous What the journal recorded.
 * @param keyOf Content key of job `i`.
 * @param lineOf Line of job `i` in the list.
 */
export function planReopen(
  size: number,
  previous: JournalState,
  keyOf: (job: number) => string,
  lineOf: (job: number) => number,
): ReopenPlan[] {
  const plans: ReopenPlan[] = [];
  if (previous.failedSettled.size === 0) return plans;
  for (let job = 0; job < size; job++) {
    const failed = previous.failedSettled.get(keyOf(job));
    if (failed !== undefined && previous.settled.has(failed.key)) {
      plans.push({ job, record: { ...failed, line: lineOf(job) } });
    }
  }
  return plans;
}

/** How a job list's `source` is named to the user: its file name (`./jobs.txt` and `/abs/jobs.txt` are one list). */
function listName(source: string): string {
  return source === "-" ? "standard input" : basename(source) || source;
}

/**
 * Refuses a default results directory (the one named after the list, which
 * `jobs.txt` and `jobs.jsonl` beside it share) that holds another list's
 * results: its journal's first run (`owner`, see `firstRunSource` in
 * results_store.ts) named a list of another file name. The list a
 * directory was made for keeps it, even if another list was later run on
 * it on purpose (`--results DIR`). Called with the directory locked,
 * before anything in it is moved (`--fresh`), recorded or run; a directory
 * the user named is never checked.
 *
 * @example
 * ```ts
 * import { checkSameList } from "./resume.ts";
 * checkSameList("./jobs.txt", "/work/jobs.txt", "jobs.results"); // the same list
 * checkSameList(undefined, "jobs.jsonl", "jobs.results"); // a new directory
 * let refused = "";
 * try {
 *   checkSameList("jobs.txt", "jobs.jsonl", "jobs.results");
 * } catch (err) {
 *   refused = (err as Error).message;
 * }
 * console.assert(refused === "jobs.results holds the results of jobs.txt, not jobs.jsonl: " +
 *   "give this list its own with --results DIR");
 * ```
 *
 * @param owner The list the journal's first run named; `undefined` when none did.
 * @param source This run's job list, as given.
 * @param dir The results directory, as named in the message.
 * @throws {ResultsDirError} `REFUSED`, problem `another-list`, naming both lists and the way out.
 */
export function checkSameList(owner: string | undefined, source: string, dir: string): void {
  if (owner === undefined || listName(owner) === listName(source)) return;
  const whose = `${dir} holds the results of ${listName(owner)}, not ${listName(source)}`;
  throw new ResultsDirError("another-list", `${whose}: give this list its own with --results DIR`);
}
