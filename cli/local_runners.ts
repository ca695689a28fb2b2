/**
 * `--local`: the manager's own workers are runners, made here, where both
 * sides may be imported, and handed to {@linkcode Manager.start} as its
 * `localWorkers`.
 *
 * @module
 */

import type { LocalWorkerFactory } from "../manager/manager.ts";
import { Runner } from "../runner/runner.ts";

/**
 * Makes each local worker a {@linkcode Runner} in this process.
 *
 * @example
 * ```ts ignore
 * import { Manager } from "../manager/manager.ts";
 * import { localRunners } from "./local_runners.ts";
 * const manager = await Manager.start({ jobs, resultsDir: "results", local: 4, localWorkers: localRunners });
 * ```
 */
export const localRunners: LocalWorkerFactory = (spec) => new Runner(spec);
