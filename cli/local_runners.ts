/**
 * `--local`: what the manager's own workers need from the runner's side,
 * made here, where both sides may be imported, and handed to
 * {@linkcode Manager.start} as its `localWorkers`. Text workers run their
 * jobs through the runner's {@linkcode JobExecutor} and are served by the
 * manager in its process, with no connection and no codec; a list of task
 * bundles gets one binary node, a {@linkcode Runner} connected in memory
 * (the manager's `dial`: no socket, the same protocol and handshake).
 *
 * @module
 */

import type { LocalWorkerFactory } from "../manager/manager.ts";
import { JobExecutor } from "../runner/exec/job_executor.ts";
import { makeNodeWorkDir } from "../runner/binary/node_pool.ts";
import { Runner } from "../runner/runner.ts";

/**
 * The runner's side of `local` workers.
 *
 * @example
 * ```ts ignore
 * import { Manager } from "../manager/manager.ts";
 * import { localRunners } from "./local_runners.ts";
 * const manager = await Manager.start({ jobs, resultsDir: "results", local: 4, localWorkers: localRunners });
 * ```
 */
export const localRunners: LocalWorkerFactory = {
  openJobs: ({ shell }) => JobExecutor.open({ prefix: "vico-local-", shell }),
  node: ({ dial, ...spec }) => new Runner({ ...spec, connect: () => Promise.resolve().then(dial) }),
  // The node's work directory can be made: made once and removed.
  nodeReady: async () => await Deno.remove(await makeNodeWorkDir()),
};
