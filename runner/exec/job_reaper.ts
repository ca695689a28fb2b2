/**
 * Ends what a runner's previous life left running. A runner killed with
 * SIGKILL cannot end its jobs; with a state directory (`--persist`) each job
 * was written down before it ran ({@linkcode RunnerState.ledger}: its
 * process group, its `VICO_JOB_ID`, its cgroup leaf), and the next runner
 * started on that directory ends them first, before it takes any work.
 *
 * A recorded process group is ended only if some process in it still
 * carries the job's `VICO_JOB_ID` in its environment (`/proc/PID/environ`):
 * a group id recycled by an unrelated process since is left alone. A life
 * whose runner process is still alive (same pid, same start time) is another
 * runner's on the same directory, and is left alone too.
 *
 * Deno gives no program without `--allow-all` `/proc`, so `/bin/sh` reads
 * it (as runner/exec/job_cgroup.ts does for `/sys`).
 *
 * @module
 */

import { logger } from "../../util/log.ts";
import { endCgroupLeaves, sh } from "./job_cgroup.ts";
import { endProcessGroup, JOB_ID_VARIABLE, type JobRecord } from "./process_runner.ts";
import type { LifeLedger, RunnerState } from "../service/runner_state.ts";

const log = logger("runner", "reaper");

/** A process's start time (`/proc/PID/stat` field 22, clock ticks since boot), or undefined when it is gone. */
export async function processStartTime(pid: number): Promise<string | undefined> {
  const out = await sh('read -r s < "/proc/$0/stat" || exit 1; f() { shift 19; echo "$1"; }; f ${s##*) }', [
    String(pid),
  ]);
  const start = out.stdout.trim();
  return out.ok && /^[0-9]+$/.test(start) ? start : undefined;
}

/**
 * Of `jobs`, those whose process group still holds a process that carries
 * the job's `VICO_JOB_ID`: one pass over `/proc`, builtins only but for the
 * environment of a process in a recorded group.
 */
export async function groupsStillRunning(jobs: readonly JobRecord[]): Promise<JobRecord[]> {
  if (jobs.length === 0) return [];
  const script = `
f() { P=$3; }
for d in /proc/[0-9]*; do
  read -r s < "$d/stat" 2>/dev/null || continue
  f \${s##*) }
  for r in "$@"; do
    [ "\${r%%=*}" = "$P" ] || continue
    if tr '\\0' '\\n' < "$d/environ" 2>/dev/null | grep -qxF "${JOB_ID_VARIABLE}=\${r#*=}"; then echo "$P"; fi
  done
done`;
  const out = await sh(script, ["sh", ...jobs.map((j) => `${j.pgid}=${j.id}`)]);
  const live = new Set(out.stdout.split("\n").filter((l) => l !== "").map(Number));
  return jobs.filter((j) => live.has(j.pgid));
}

/**
 * Ends the jobs of earlier lives recorded in `state` whose runner is gone,
 * and forgets their records; then opens this life's ledger. Call before the
 * runner takes any work.
 */
export async function takeOverState(state: RunnerState, graceMs: number): Promise<LifeLedger> {
  for (const life of await state.lives()) {
    const [pid, start] = life.owner.split(" ");
    if (pid !== undefined && start !== undefined && await processStartTime(Number(pid)) === start) {
      log.warn("Runner process {pid} still uses the state directory {dir}: its jobs are left alone", {
        pid,
        dir: state.dir,
      });
      continue;
    }
    const leaves = life.jobs.flatMap((j) => j.cgroup === undefined ? [] : [j.cgroup]);
    if (leaves.length > 0) await endCgroupLeaves(leaves);
    const live = await groupsStillRunning(life.jobs);
    if (live.length > 0) {
      log.warn("Ending {n} job(s) left running by this runner's previous life (pid {pid}): process groups {groups}", {
        n: live.length,
        pid: pid ?? "?",
        groups: live.map((j) => j.pgid).join(", "),
      });
      await Promise.all(live.map((j) => endProcessGroup(j.pgid, graceMs)));
    }
    await state.forgetLife(life.life);
  }
  const start = await processStartTime(Deno.pid);
  return state.ledger(`${Deno.pid}-${crypto.randomUUID().slice(0, 8)}`, `${Deno.pid} ${start ?? ""}`.trim());
}
