/**
 * Results directories of ad-hoc runs (a template or a list on standard
 * input): each run gets a new one under one parent, named by date and a
 * counter, `vico-results/<YYYY-MM-DD>-<n>/`, so unrelated lists never mix
 * and never resume by surprise. A job file keeps its own results directory
 * (resume by content), as before.
 *
 * @module
 */

import { join } from "node:path";

/** The parent of ad-hoc runs' results directories, in the working directory. */
export const ADHOC_PARENT = "vico-results";

const RUN_NAME = /^([0-9]{4}-[0-9]{2}-[0-9]{2})-([0-9]+)$/;

/** A date as `YYYY-MM-DD`, in local time. */
function dayOf(date: Date): string {
  const two = (n: number) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${two(date.getMonth() + 1)}-${two(date.getDate())}`;
}

/**
 * The next run's directory name for `date`, given the names already in the parent.
 *
 * @example
 * ```ts
 * import { nextAdhocRunName } from "./adhoc_results.ts";
 * const day = new Date(2026, 11, 1);
 * console.assert(nextAdhocRunName(day, []) === "2026-12-01-1");
 * console.assert(nextAdhocRunName(day, ["2026-12-01-1", "2026-12-01-9", "2026-11-30-12", "x"]) === "2026-12-01-10");
 * ```
 */
export function nextAdhocRunName(date: Date, existing: Iterable<string>): string {
  const day = dayOf(date);
  let highest = 0;
  for (const name of existing) {
    const m = RUN_NAME.exec(name);
    if (m !== null && m[1] === day) highest = Math.max(highest, Number(m[2]));
  }
  return `${day}-${highest + 1}`;
}

/**
 * The latest run's name among `existing` (by date, then counter), for a
 * `--resume` that names no directory; `undefined` if there is none.
 *
 * @example
 * ```ts
 * import { latestAdhocRunName } from "./adhoc_results.ts";
 * console.assert(latestAdhocRunName(["2026-11-30-12", "2026-12-01-2", "2026-12-01-10", "notes"]) === "2026-12-01-10");
 * ```
 */
export function latestAdhocRunName(existing: Iterable<string>): string | undefined {
  let best: { day: string; n: number; name: string } | undefined;
  for (const name of existing) {
    const m = RUN_NAME.exec(name);
    if (m === null) continue;
    const n = Number(m[2]);
    if (best === undefined || m[1] > best.day || (m[1] === best.day && n > best.n)) best = { day: m[1], n, name };
  }
  return best?.name;
}

/**
 * Makes a new run's directory under `parent` (made if missing) and returns
 * its path. Two managers starting at once get different directories: the
 * name is taken by a non-recursive `mkdir`, and a name taken meanwhile is
 * skipped.
 */
export async function makeAdhocRunDir(parent: string = ADHOC_PARENT, now: Date = new Date()): Promise<string> {
  await Deno.mkdir(parent, { recursive: true });
  for (let tries = 0; tries < 1000; tries++) {
    const names: string[] = [];
    for await (const entry of Deno.readDir(parent)) names.push(entry.name);
    const path = join(parent, nextAdhocRunName(now, names));
    try {
      await Deno.mkdir(path);
      return path;
    } catch (err) {
      if (!(err instanceof Deno.errors.AlreadyExists)) throw err;
    }
  }
  throw new Error(`cannot make a new run directory in ${parent}`);
}
