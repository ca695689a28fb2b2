/**
 * Spawns vico's entry points (`manager.ts`, `runner.ts`) as real processes
 * under `deno run` with exactly the permissions the compiled binaries get
 * (the `vico` permission set in deno.json), and cleans them up.
 *
 * @module
 */

/** The repository root. */
export const ROOT = new URL("../../", import.meta.url).pathname;

/** `deno run` flags the compiled binaries are built with (see the `compile` task). */
export const RUN_FLAGS = ["run", "-q", "-P=vico"];

/**
 * Environment every spawned process gets. Tests run as root in CI
 * containers, and a root runner refuses to run jobs unless told to
 * (`VICO_ALLOW_ROOT=1`, the same as `--allow-root`); the tests of that rule
 * pass `VICO_ALLOW_ROOT: ""` to take it away. A runner's default is one
 * worker per core; tests written when it was one worker get one
 * (`VICO_WORKERS=1`) unless they say `--workers`/`-j` (the command line wins)
 * or pass `VICO_WORKERS: ""`.
 */
export const TEST_ENV: Readonly<Record<string, string>> = Object.freeze({
  NO_COLOR: "1",
  VICO_ALLOW_ROOT: "1",
  VICO_WORKERS: "1",
});

/** Options for {@linkcode EntryProcess.spawn}. */
export interface SpawnOptions {
  /** Working directory. @default {the repository root} */
  cwd?: string;
  /** Text to feed on stdin (stdin is closed after it). */
  stdin?: string;
  /** Extra environment. */
  env?: Record<string, string>;
}

/** A running manager or runner whose output is collected as it comes. */
export class EntryProcess implements AsyncDisposable {
  readonly child: Deno.ChildProcess;
  #stdout = "";
  #stderr = "";
  readonly #pumps: Promise<void>;
  #status: Promise<Deno.CommandStatus>;
  #watchers: (() => void)[] = [];

  private constructor(child: Deno.ChildProcess, stdin?: string) {
    this.child = child;
    const pump = async (stream: ReadableStream<Uint8Array>, into: "out" | "err") => {
      const dec = new TextDecoder();
      for await (const chunk of stream) {
        if (into === "out") this.#stdout += dec.decode(chunk, { stream: true });
        else this.#stderr += dec.decode(chunk, { stream: true });
        for (const w of this.#watchers) w();
      }
    };
    this.#pumps = Promise.all([pump(child.stdout, "out"), pump(child.stderr, "err")]).then(() => {});
    if (stdin !== undefined) {
      const w = child.stdin.getWriter();
      w.write(new TextEncoder().encode(stdin)).then(() => w.close()).catch(() => {});
    }
    this.#status = child.status;
  }

  /** Starts `deno run -q -P=vico <entry> <args>`. */
  static spawn(entry: string, args: string[], options: SpawnOptions = {}): EntryProcess {
    const child = new Deno.Command(Deno.execPath(), {
      args: [...RUN_FLAGS, ROOT + entry, ...args],
      cwd: options.cwd ?? ROOT,
      env: { ...TEST_ENV, ...options.env },
      stdin: options.stdin === undefined ? "null" : "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    return new EntryProcess(child, options.stdin);
  }

  /** Starts an arbitrary program with the same output collection. */
  static spawnProgram(program: string, args: string[], options: SpawnOptions = {}): EntryProcess {
    const child = new Deno.Command(program, {
      args,
      cwd: options.cwd ?? ROOT,
      env: { ...TEST_ENV, ...options.env },
      stdin: options.stdin === undefined ? "null" : "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    return new EntryProcess(child, options.stdin);
  }

  /** Process id. */
  get pid(): number {
    return this.child.pid;
  }

  /** Everything written to stdout so far. */
  get stdout(): string {
    return this.#stdout;
  }

  /** Everything written to stderr so far. */
  get stderr(): string {
    return this.#stderr;
  }

  /** Waits until stdout+stderr match `pattern`; rejects after `timeoutMs` or at exit. */
  waitFor(pattern: RegExp, timeoutMs = 30_000): Promise<RegExpMatchArray> {
    return new Promise((resolve, reject) => {
      let timer: ReturnType<typeof setTimeout> | undefined = undefined;
      const check = () => {
        const m = (this.#stderr + "\n" + this.#stdout).match(pattern);
        if (m) {
          done();
          resolve(m);
        }
      };
      const done = () => {
        clearTimeout(timer);
        this.#watchers = this.#watchers.filter((w) => w !== check);
      };
      timer = setTimeout(() => {
        done();
        reject(new Error(`Timed out waiting for ${pattern}; stderr so far:\n${this.#stderr}`));
      }, timeoutMs);
      this.#pumps.then(() => {
        if (this.#watchers.includes(check)) {
          done();
          reject(new Error(`Process ended before ${pattern}; stderr:\n${this.#stderr}`));
        }
      });
      this.#watchers.push(check);
      check();
    });
  }

  /** Waits for the process to exit and its output to be read. */
  async exit(timeoutMs = 120_000): Promise<Deno.CommandStatus> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        this.kill("SIGKILL");
        reject(new Error(`Process did not exit within ${timeoutMs} ms; stderr:\n${this.#stderr}`));
      }, timeoutMs);
    });
    try {
      const status = await Promise.race([this.#status, timeout]);
      await this.#pumps;
      return status;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Sends a signal, ignoring a process that is already gone. */
  kill(signal: Deno.Signal = "SIGTERM"): void {
    try {
      this.child.kill(signal);
    } catch {
      // Already exited.
    }
  }

  /**
   * Peak resident memory (VmHWM) in bytes, read from /proc while it runs.
   * Through `cat`: Deno only lets `--allow-all` read another process's /proc.
   */
  peakRss(): number {
    return peakRssOf(this.pid);
  }

  /** Kills the process if still running and waits for it. */
  async [Symbol.asyncDispose](): Promise<void> {
    this.kill("SIGKILL");
    await this.#status;
    await this.#pumps;
  }
}

/** What a manager logs once it listens: the port is group 1. */
export const LISTENING = / on [^ ]+:(\d+) \([^)]*\); results in /;

/** Starts a manager and waits until it listens; returns it and its port. */
export async function startManager(args: string[], options: SpawnOptions = {}): Promise<
  { manager: EntryProcess; port: number }
> {
  const manager = EntryProcess.spawn("manager.ts", args, options);
  const m = await manager.waitFor(LISTENING);
  return { manager, port: Number(m[1]) };
}

/** Options for {@linkcode startManagerOn}. */
export interface ManagerOnOptions extends SpawnOptions {
  /** The job list's file name in `dir`; a `.jsonl` name makes it a list of task bundles. @default {"jobs.txt"} */
  listName?: string;
}

/** A manager started by {@linkcode startManagerOn}: the process, its port, its job list and results directory. */
export interface ManagerOn {
  manager: EntryProcess;
  port: number;
  list: string;
  results: string;
}

/**
 * Writes `jobs` (lines) to `dir/jobs.txt` (or `options.listName`) and starts
 * a manager on it, results in `dir/res`, on any free port, with `extra` flags
 * after those (a later `--port N` wins: a fixed port for a manager that must
 * come back on it, see {@linkcode freePort}).
 */
export async function startManagerOn(
  dir: string,
  jobs: readonly string[],
  extra: string[] = [],
  options: ManagerOnOptions = {},
): Promise<ManagerOn> {
  const { listName = "jobs.txt", ...spawn } = options;
  const list = await writeJobList(dir, jobs, listName);
  return startManagerAgain({ list, results: `${dir}/res` }, extra, spawn);
}

/** Writes `jobs` (lines) to `dir/name` and returns its path. */
export async function writeJobList(dir: string, jobs: readonly string[], name = "jobs.txt"): Promise<string> {
  const list = `${dir}/${name}`;
  await Deno.writeTextFile(list, jobs.join("\n") + "\n");
  return list;
}

/**
 * Writes `tasks` (one JSON object a line) to `dir/tasks.jsonl` and starts a
 * manager on it as {@linkcode startManagerOn} does.
 */
export function startManagerOnTasks(
  dir: string,
  tasks: readonly unknown[],
  extra: string[] = [],
  options: ManagerOnOptions = {},
): Promise<ManagerOn> {
  return startManagerOn(dir, tasks.map((t) => JSON.stringify(t)), extra, { listName: "tasks.jsonl", ...options });
}

/**
 * Starts a manager on the job list and results directory of an earlier one
 * (a restart), on any free port, with `extra` flags after those, and waits
 * until it listens.
 */
export async function startManagerAgain(
  on: { list: string; results: string },
  extra: string[] = [],
  options: SpawnOptions = {},
): Promise<ManagerOn> {
  const { list, results } = on;
  return {
    ...await startManager(["--jobs", list, "--results", results, "--port", "0", ...extra], options),
    list,
    results,
  };
}

/** A TCP port on 127.0.0.1 that was free a moment ago (for a manager that must come back on the same port). */
export function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = l.addr.port;
  l.close();
  return port;
}

/** Starts a runner against `127.0.0.1:port`. */
export function startRunner(port: number, args: string[] = [], options: SpawnOptions = {}): EntryProcess {
  return EntryProcess.spawn("runner.ts", ["--manager", `127.0.0.1:${port}`, ...args], options);
}

/** Starts a binary node (a runner with `--protocol binary`) against `127.0.0.1:port`. */
export function startNode(port: number, args: string[] = [], options: SpawnOptions = {}): EntryProcess {
  return startRunner(port, ["--protocol", "binary", ...args], options);
}

/** Peak resident memory (VmHWM) of `pid` in bytes, or 0 once it is gone. */
export function peakRssOf(pid: number): number {
  const out = new Deno.Command("cat", { args: [`/proc/${pid}/status`], stderr: "null" }).outputSync();
  const m = new TextDecoder().decode(out.stdout).match(/VmHWM:\s+(\d+) kB/);
  return m ? Number(m[1]) * 1024 : 0;
}
