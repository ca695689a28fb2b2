/**
 * Helpers for the adversarial tests of how a job's process is started,
 * waited for and ended (`spawn_attack_*_test.ts`).
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { type ProcessOutcome, runProcess, type RunProcessOptions } from "../../../runner/exec/process_runner.ts";
import { PosixSpawn } from "../../../runner/exec/posix_spawn.ts";
import { OutputSpool, type SpoolFiles } from "../../../runner/exec/output_spool.ts";
import { shellArgv } from "../../../runner/exec/process_runner.ts";

/** Both ways a job with an output file starts. */
export const VIAS = ["posix_spawn", "command"] as const;
export type Via = typeof VIAS[number];

if (PosixSpawn.open() === undefined) throw new Error("posix_spawn is expected to work on this test machine");

export const text = (b: Uint8Array): string => new TextDecoder().decode(b);

export async function withDir<T>(f: (dir: string) => Promise<T>): Promise<T> {
  const dir = await Deno.makeTempDir({ prefix: "vico-spawn-attack-" });
  try {
    return await f(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Runs argv with its output in a fresh file: the outcome and the file's bytes. */
export async function runToFile(
  via: Via,
  argv: string[],
  options: Omit<RunProcessOptions, "outputFile" | "via"> = {},
): Promise<ProcessOutcome & { out: Uint8Array; ms: number }> {
  return await withDir(async (dir) => {
    const outputFile = join(dir, "out");
    const started = performance.now();
    const outcome = await runProcess(argv, { ...options, outputFile, via });
    const ms = performance.now() - started;
    return { ...outcome, out: await Deno.readFile(outputFile), ms };
  });
}

/** What a shell command prints (stdout), run through Deno.Command. */
export async function shOut(command: string): Promise<string> {
  const out = await new Deno.Command("/bin/sh", { args: ["-c", command], stdout: "piped", stderr: "null" }).output();
  return text(out.stdout);
}

/** The number of open descriptors of this process (through a shell: no permission needed for /proc/self). */
export async function openFds(): Promise<number> {
  return Number((await shOut(`ls /proc/${Deno.pid}/fd | wc -l`)).trim());
}

/** This process's children: pid and state letter. */
export async function children(): Promise<{ pid: number; state: string; args: string }[]> {
  const out = await shOut(`ps --ppid ${Deno.pid} -o pid=,stat=,args=`);
  return out.trim().split("\n").filter((l) => l.trim() !== "").map((line) => {
    const [pid, state, ...args] = line.trim().split(/\s+/);
    return { pid: Number(pid), state, args: args.join(" ") };
  }).filter((c) => !c.args.startsWith("ps ") && !c.args.startsWith("/bin/sh -c ps "));
}

export { alive, endsWithin, stateOf } from "../../helpers/process_state.ts";

/** Kills the processes whose pids the test recorded (never by name). */
export function killPids(pids: number[]): void {
  for (const pid of pids) {
    if (pid > 1) {
      try {
        Deno.kill(pid, "SIGKILL");
      } catch {
        // gone already
      }
    }
  }
}

/** The resident set size of this process, from /proc/<pid>/status read by `cat`. */
export async function rssBytes(): Promise<number> {
  const status = await shOut(`cat /proc/${Deno.pid}/status`);
  const kb = Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1]);
  assert.ok(kb > 0, "VmRSS read");
  return kb * 1024;
}

/**
 * A text job as `JobExecutor.run` runs it (a spool file reserved from
 * `files`, written by the job, adopted at its size), on the path given:
 * the executor itself takes its path from `VICO_SPAWN`, read once per process.
 */
export async function runJob(
  files: SpoolFiles,
  command: string,
  via: Via,
  options: Omit<RunProcessOptions, "outputFile" | "via"> = {},
): Promise<{ outcome: ProcessOutcome; out: string; path: string; inode: number; ms: number }> {
  const spool = new OutputSpool({ dir: files.dir, files });
  const path = spool.reserveFile();
  const started = performance.now();
  try {
    const outcome = await runProcess(shellArgv(command), { stderrOnStdout: true, ...options, outputFile: path, via });
    const ms = performance.now() - started;
    spool.adopt(outcome.outputBytes ?? 0);
    let out = "";
    const decoder = new TextDecoder();
    await spool.pipeTo((chunk) => Promise.resolve(void (out += decoder.decode(chunk, { stream: true }))));
    // A reused spool file comes back under a fresh name: it is the same file (inode) that tells reuse.
    const inode = (await Deno.stat(path).catch(() => ({ ino: -1 }))).ino ?? -1;
    return { outcome, out: out + decoder.decode(), path, inode, ms };
  } finally {
    await spool.dispose();
  }
}

export function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))];
}
