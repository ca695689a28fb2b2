/**
 * `--local`: the manager's own workers are runners, made here, where both
 * sides may be imported, and handed to {@linkcode Manager.start} as its
 * `localWorkers`. They connect in memory (the manager's `dial`), through
 * the runner's `connect` hook: no socket, the same protocol and handshake.
 *
 * @module
 */

import type { LocalWorkerFactory } from "../manager/manager.ts";
import { Runner } from "../runner/runner.ts";

/**
 * Makes each local worker a {@linkcode Runner} in this process, connecting
 * through the manager's in-memory dial instead of TCP.
 *
 * @example
 * ```ts ignore
 * import { Manager } from "../manager/manager.ts";
 * import { localRunners } from "./local_runners.ts";
 * const manager = await Manager.start({ jobs, resultsDir: "results", local: 4, localWorkers: localRunners });
 * ```
 */
export const localRunners: LocalWorkerFactory = ({ dial, ...spec }) =>
  new Runner({ ...spec, connect: () => Promise.resolve().then(dial) });
