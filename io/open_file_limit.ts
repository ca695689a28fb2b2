/**
 * Room for the descriptors a number of jobs at once needs: the process's
 * `RLIMIT_NOFILE`. Each running job holds a few (its output file, a gate
 * pipe, its result's staged file in the manager), so a runner with many
 * workers under the common soft limit of 1,024, or any under a low
 * `ulimit -n`, failed jobs with `EMFILE` halfway through a run (and lost
 * workers with them). At start, the soft limit is raised as far as that
 * need (never beyond the hard limit, never lowered); a need the hard limit
 * cannot meet is said before any job runs.
 *
 * Deno raises a low soft limit itself at start-up (to 20,000 here, within
 * the hard limit), so the case that matters most is a hard limit below the
 * need (`ulimit -n 256` sets both): that is said before any job runs. Jobs
 * inherit the soft limit (`posix_spawn` cannot set a child's limits); this
 * raises it only as far as needed, not to the hard limit.
 *
 * @module
 */

import { LIBC, libcUsable } from "./libc.ts";

/** Descriptors the process needs besides its jobs (Deno's own, the journal, listeners, logs). */
export const BASE_DESCRIPTORS = 64;
/** Descriptors one running job may hold at once, on the runner's side and the manager's. */
export const DESCRIPTORS_PER_JOB = 4;

/** `RLIMIT_NOFILE` on Linux (x86_64 and aarch64 share it). */
const RLIMIT_NOFILE = 7;

/** The outcome of {@linkcode ensureOpenFiles}. */
export interface OpenFileRoom {
  /** Descriptors wanted. */
  readonly needed: number;
  /** The soft limit now (after any raise); `undefined` when it cannot be read here. */
  readonly soft: number | undefined;
  /** The hard limit; `undefined` when it cannot be read here. */
  readonly hard: number | undefined;
  /** Whether the soft limit now covers the need (true when it cannot be told). */
  readonly enough: boolean;
}

/**
 * Raises the soft `RLIMIT_NOFILE` to cover `jobs` running at once, if it
 * is lower and the hard limit allows. Where libc cannot be called (no FFI,
 * not Linux) nothing is changed and `enough` is true.
 *
 * @param jobs Jobs that may run at once in this process.
 */
export function ensureOpenFiles(jobs: number): OpenFileRoom {
  const needed = BASE_DESCRIPTORS + DESCRIPTORS_PER_JOB * Math.max(0, jobs);
  if (!libcUsable()) return { needed, soft: undefined, hard: undefined, enough: true };
  let lib: Deno.DynamicLibrary<typeof SYMBOLS> | undefined;
  try {
    lib = Deno.dlopen(LIBC, SYMBOLS);
  } catch {
    return { needed, soft: undefined, hard: undefined, enough: true };
  }
  try {
    const limits = new BigUint64Array(2);
    if (lib.symbols.getrlimit(RLIMIT_NOFILE, limits) !== 0) {
      return { needed, soft: undefined, hard: undefined, enough: true };
    }
    // RLIM_INFINITY is all ones: as a number, larger than any need.
    const [soft, hard] = [Number(limits[0]), Number(limits[1])];
    if (soft >= needed) return { needed, soft, hard, enough: true };
    const raised = Math.min(needed, hard);
    if (raised > soft) {
      limits[0] = BigInt(raised);
      if (lib.symbols.setrlimit(RLIMIT_NOFILE, limits) === 0) {
        return { needed, soft: raised, hard, enough: raised >= needed };
      }
    }
    return { needed, soft, hard, enough: false };
  } finally {
    lib.close();
  }
}

const SYMBOLS = {
  getrlimit: { parameters: ["i32", "buffer"], result: "i32" },
  setrlimit: { parameters: ["i32", "buffer"], result: "i32" },
} as const;

/** The one line said when {@linkcode ensureOpenFiles} could not make room for `what` (e.g. `--local 50`). */
export function openFilesShortage(room: OpenFileRoom, what: string): string {
  return `${what} needs about ${room.needed} open files, and this process may have ${room.soft} ` +
    `(ulimit -n; hard limit ${room.hard}): raise the limit, or run fewer jobs at once`;
}
