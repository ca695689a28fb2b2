/**
 * Workload 4, the manager's engine alone: a real manager (durable journal)
 * serves QUEUED jobs to simulated text runners (no processes); the first
 * WINDOW results are timed. Prints one JSON line: load time, jobs/s, cost
 * per job (wall, and the manager process's own CPU: `cpuPerJobUs`, user and
 * system time of this process, all its threads; the simulated runners are
 * another process), and the process's resident memory. MODE is the runners'
 * exchange: `pipe` (the vico extension's pipelined one, the default) or
 * `lockstep` (the plain draft's).
 *
 *   deno run -P=vico bench/engine.ts QUEUED WINDOW RUNNERS [MODE]
 *
 * @module
 */

import { join } from "node:path";
import process from "node:process";
import { Manager } from "../manager/manager.ts";
import { parseJobList } from "../manager/jobs/job_list.ts";

const [queued, window, runners] = Deno.args.slice(0, 3).map(Number);
const mode = Deno.args[3] ?? "pipe";

function rssOf(field: "VmRSS" | "VmHWM"): number {
  // Through cat: Deno only lets --allow-all read /proc/self.
  const status = new Deno.Command("cat", { args: [`/proc/${Deno.pid}/status`] }).outputSync().stdout;
  const m = new TextDecoder().decode(status).match(new RegExp(`${field}:\\s+(\\d+) kB`));
  return m ? Number(m[1]) * 1024 : 0;
}

const dir = await Deno.makeTempDir({ prefix: "vico-bench-engine-" });
try {
  const t0 = performance.now();
  let text = "";
  for (let i = 0; i < queued; i++) text += `true ${i}\n`;
  const jobs = parseJobList(new TextEncoder().encode(text));
  text = "";
  let settled = 0;
  let windowStart = 0, windowEnd = 0;
  let cpuStart = { user: 0, system: 0 }, cpuEnd = cpuStart;
  let reached!: () => void;
  const enough = new Promise<void>((r) => (reached = r));
  const manager = await Manager.start({
    jobs,
    resultsDir: join(dir, "results"),
    port: 0,
    onSettled: () => {
      settled++;
      if (settled === 1) {
        windowStart = performance.now();
        cpuStart = process.cpuUsage();
      }
      if (settled === window) {
        windowEnd = performance.now();
        cpuEnd = process.cpuUsage();
        reached();
      }
    },
  });
  const loadSeconds = (performance.now() - t0) / 1000;
  // The job list's text is garbage now: collect it (with --v8-flags=--expose-gc) before measuring.
  (globalThis as { gc?: () => void }).gc?.();
  const loadedRss = rssOf("VmRSS");
  const sim = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-q",
      "-P=vico",
      new URL("./sim_runners.ts", import.meta.url).pathname,
      String(manager.address.port),
      String(runners),
      String(window + runners),
      mode,
    ],
    stdout: "null",
  }).spawn();
  await Promise.race([enough, manager.finished]);
  const seconds = ((windowEnd || performance.now()) - windowStart) / 1000;
  const peakRss = rssOf("VmHWM");
  manager.close();
  await manager.finished.catch(() => {});
  await sim.status;
  // The first result opens the window, so WINDOW-1 intervals fall in it.
  const perJobUs = (seconds / (window - 1)) * 1e6;
  const userPerJobUs = (cpuEnd.user - cpuStart.user) / (window - 1);
  const systemPerJobUs = (cpuEnd.system - cpuStart.system) / (window - 1);
  const cpuPerJobUs = userPerJobUs + systemPerJobUs;
  console.log(
    JSON.stringify({
      queued,
      window,
      runners,
      loadSeconds,
      loadedRss,
      peakRss,
      mode,
      jobsPerSec: (window - 1) / seconds,
      perJobUs,
      cpuPerJobUs,
      userPerJobUs,
      systemPerJobUs,
    }),
  );
} finally {
  await Deno.remove(dir, { recursive: true }).catch(() => {});
}
