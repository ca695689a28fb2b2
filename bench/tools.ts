/**
 * How the benchmarks run each tool: a child process timed from spawn to
 * exit, its peak memory read by `/usr/bin/time` when present, and vico's
 * manager and runner started the way users start them.
 *
 * @module
 */

import { join } from "node:path";

/** The repository root. */
export const ROOT = new URL("../", import.meta.url).pathname;

/** What one timed run did. */
export interface Timed {
  /** Wall time, seconds. */
  seconds: number;
  /** Exit code. */
  code: number;
  /** Peak resident memory in bytes (0 when unknown). */
  peakRss: number;
  /** Standard error (last 4 KiB), for failures. */
  stderr: string;
}

const TIME = (() => {
  try {
    return Deno.statSync("/usr/bin/time").isFile ? "/usr/bin/time" : undefined;
  } catch {
    return undefined;
  }
})();

/** A running child whose peak RSS `/usr/bin/time` reports at exit. */
export class Child {
  readonly process: Deno.ChildProcess;
  readonly started = performance.now();
  #stderr = "";
  readonly #pump: Promise<void>;
  #watchers: (() => void)[] = [];

  constructor(program: string, args: string[], options: { stdin?: string; env?: Record<string, string> } = {}) {
    const argv = TIME ? [TIME, "-f", "VICO_BENCH_RSS_KB=%M", program, ...args] : [program, ...args];
    const process = new Deno.Command(argv[0], {
      args: argv.slice(1),
      cwd: ROOT,
      stdin: options.stdin === undefined ? "null" : "piped",
      stdout: "null",
      stderr: "piped",
      env: { NO_COLOR: "1", VICO_ALLOW_ROOT: "1", ...options.env },
    }).spawn();
    this.process = process;
    if (options.stdin !== undefined) {
      const w = process.stdin.getWriter();
      w.write(new TextEncoder().encode(options.stdin)).then(() => w.close()).catch(() => {});
    }
    this.#pump = (async () => {
      const dec = new TextDecoder();
      for await (const chunk of process.stderr) {
        this.#stderr = (this.#stderr + dec.decode(chunk, { stream: true })).slice(-65536);
        for (const w of this.#watchers) w();
      }
    })();
  }

  /** Waits until stderr matches `pattern`. */
  waitFor(pattern: RegExp, timeoutMs = 60_000): Promise<RegExpMatchArray> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`no ${pattern} within ${timeoutMs} ms: ${this.#stderr}`)),
        timeoutMs,
      );
      const check = () => {
        const m = this.#stderr.match(pattern);
        if (m === null) return;
        clearTimeout(timer);
        this.#watchers = this.#watchers.filter((w) => w !== check);
        resolve(m);
      };
      this.#watchers.push(check);
      check();
    });
  }

  /** Waits for exit. */
  async done(): Promise<Timed> {
    const status = await this.process.status;
    await this.#pump;
    const seconds = (performance.now() - this.started) / 1000;
    const m = this.#stderr.match(/VICO_BENCH_RSS_KB=(\d+)/);
    return {
      seconds,
      code: status.code,
      peakRss: m ? Number(m[1]) * 1024 : 0,
      stderr: this.#stderr.replace(/VICO_BENCH_RSS_KB=\d+\n?/, "").slice(-4096),
    };
  }
}

/** Runs a program to completion. */
export function timed(
  program: string,
  args: string[],
  options: { stdin?: string; env?: Record<string, string> } = {},
): Promise<Timed> {
  return new Child(program, args, options).done();
}

/** `deno run` flags of the compiled binaries. */
export const RUN = ["run", "-q", "-P=vico"];

/** Starts `manager.ts` with `args`. */
export function manager(args: string[]): Child {
  return new Child(Deno.execPath(), [...RUN, join(ROOT, "manager.ts"), "--no-progress", ...args]);
}

/** Starts `runner.ts` with `args`. */
export function runner(args: string[]): Child {
  return new Child(Deno.execPath(), [...RUN, join(ROOT, "runner.ts"), "-q", ...args]);
}

/** The port a manager logged it listens on. */
export async function listeningPort(m: Child): Promise<number> {
  return Number((await m.waitFor(/ on [^ ]+:(\d+) \(/))[1]);
}

/** Whether a program is on PATH. */
export function have(program: string): boolean {
  return new Deno.Command("sh", { args: ["-c", `command -v ${program}`], stdout: "null", stderr: "null" })
    .outputSync().success;
}
