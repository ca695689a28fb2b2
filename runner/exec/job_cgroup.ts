/**
 * Per-job resource limits with cgroup v2 (`runner --job-memory`,
 * `--job-cpus`): each job runs in a cgroup of its own, a leaf under the
 * runner's own cgroup, with `memory.max` (and no swap) and `cpu.max`. A job
 * over its memory is killed by the kernel's OOM killer, alone (the whole job,
 * `memory.oom.group`), and the runner learns it from the leaf's
 * `memory.events`; the runner itself is never the one killed.
 *
 * The runner's cgroup must be delegated to it (systemd `Delegate=yes`), with
 * the controllers the flags need. cgroup v2's "no internal processes" rule
 * means a cgroup that hands controllers to its children holds no processes
 * itself, so at start-up the runner moves itself into a leaf
 * (`<own>/vico-runner`), enables the controllers in
 * `<own>/cgroup.subtree_control`, and makes one `<own>/vico-job-<pid>-<n>`
 * leaf per job, removed once the job has ended.
 *
 * The job enters its leaf without a race: its wrapper shell writes its own
 * pid into the leaf's `cgroup.procs` before exec'ing the job (see
 * {@linkcode JobCgroup.wrap}), so nothing the job starts is ever outside it.
 *
 * Kernel interface: Documentation/admin-guide/cgroup-v2.rst.
 *
 * @module
 */

import { join } from "node:path";
import { VicoError } from "../../core/errors.ts";
import { parseSize } from "../../core/size.ts";
import { logger } from "../../util/log.ts";
import { type JobLeaf, type JobLeaves, SETSID } from "./process_runner.ts";
import { processOutput, startProcess } from "../../util/command.ts";

const log = logger("runner", "cgroup");

/** Limits every job gets. */
export interface JobLimits {
  /** `memory.max` in bytes (`--job-memory`); swap is off for the job. */
  memoryBytes?: number;
  /** How `--job-memory` was written, for messages (e.g. "512M"). */
  memoryText?: string;
  /** CPUs' worth of time per period (`--job-cpus`), e.g. 2 or 0.5. */
  cpus?: number;
}

/**
 * Reads `--job-memory SIZE` and `--job-cpus N`; undefined when neither is given.
 *
 * @example
 * ```ts
 * import { parseJobLimits } from "./job_cgroup.ts";
 * console.assert(parseJobLimits("512M", "1.5")?.memoryBytes === 512 * 1024 * 1024);
 * console.assert(parseJobLimits(undefined, undefined) === undefined);
 * ```
 * @throws {VicoError} `USAGE` on a malformed or too small value.
 */
export function parseJobLimits(memory: string | undefined, cpus: string | undefined): JobLimits | undefined {
  if (memory === undefined && cpus === undefined) return undefined;
  const limits: JobLimits = {};
  if (memory !== undefined) {
    let bytes: number;
    try {
      bytes = parseSize(memory);
    } catch (err) {
      throw new VicoError("USAGE", `--job-memory: ${(err as Error).message}`);
    }
    if (bytes < MIN_JOB_MEMORY) {
      throw new VicoError("USAGE", `--job-memory must be at least 1M (a shell alone needs more), got ${memory}`);
    }
    limits.memoryBytes = bytes;
    limits.memoryText = memory.trim();
  }
  if (cpus !== undefined) {
    const n = /^[0-9]+(\.[0-9]+)?$/.test(cpus.trim()) ? Number(cpus) : NaN;
    if (!(n >= 0.01)) throw new VicoError("USAGE", `--job-cpus needs a number of CPUs of at least 0.01, got ${cpus}`);
    limits.cpus = n;
  }
  return limits;
}

/** The smallest `--job-memory`. */
const MIN_JOB_MEMORY = 1024 * 1024;

/** The period of `cpu.max`, in microseconds (the kernel's default). */
export const CPU_PERIOD_US = 100_000;

/** One line of `/proc/self/mountinfo`, the fields vico needs. */
export interface MountInfo {
  /** The directory of the mounted file system that is mounted (its root). */
  root: string;
  /** Where it is mounted. */
  mountPoint: string;
  /** File system type, e.g. `cgroup2`. */
  fsType: string;
  /** Per-superblock options, e.g. `rw,memory` for a cgroup v1 memory hierarchy. */
  superOptions: string[];
}

/**
 * The process's cgroup v2 path from `/proc/self/cgroup` text (the `0::`
 * line), or undefined when it is in no v2 hierarchy.
 *
 * @example
 * ```ts
 * import { parseProcCgroup } from "./job_cgroup.ts";
 * console.assert(parseProcCgroup("0::/system.slice/vico.service\n") === "/system.slice/vico.service");
 * ```
 */
export function parseProcCgroup(text: string): string | undefined {
  for (const line of text.split("\n")) {
    if (line.startsWith("0::")) {
      // A path of a cgroup outside this process's cgroup namespace is shown
      // relative to it, and may carry " (deleted)" for a removed one.
      return line.slice(3).replace(/ \(deleted\)$/, "");
    }
  }
  return undefined;
}

/** Undoes mountinfo's octal escapes (`\040` for a space, `\011`, `\012`, `\134`). */
function unescapeMountField(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

/**
 * Parses `/proc/self/mountinfo` text (proc(5)): mount ID, parent ID,
 * major:minor, root, mount point, options, optional fields up to a lone `-`,
 * file system type, source, super options.
 */
export function parseMountInfo(text: string): MountInfo[] {
  const mounts: MountInfo[] = [];
  for (const line of text.split("\n")) {
    const fields = line.split(" ");
    const dash = fields.indexOf("-", 6);
    if (fields.length < 7 || dash < 0 || dash + 3 > fields.length) continue;
    mounts.push({
      root: unescapeMountField(fields[3]),
      mountPoint: unescapeMountField(fields[4]),
      fsType: fields[dash + 1],
      superOptions: (fields[dash + 3] ?? "").split(","),
    });
  }
  return mounts;
}

/**
 * The directory of a process's cgroup v2, from its `/proc/self/cgroup` and
 * `/proc/self/mountinfo` texts: the cgroup2 mount whose root holds the path,
 * joined with the rest of the path. Undefined without either.
 *
 * @example
 * ```ts
 * import { cgroupV2Dir } from "./job_cgroup.ts";
 * const mountinfo = "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
 * console.assert(cgroupV2Dir("0::/a/b\n", mountinfo) === "/sys/fs/cgroup/a/b");
 * ```
 */
export function cgroupV2Dir(procCgroup: string, mountinfo: string): string | undefined {
  const path = parseProcCgroup(procCgroup);
  if (path === undefined) return undefined;
  for (const mount of parseMountInfo(mountinfo)) {
    if (mount.fsType !== "cgroup2") continue;
    const root = mount.root === "/" ? "" : mount.root;
    if (root !== "" && path !== root && !path.startsWith(root + "/")) continue;
    const rest = path.slice(root.length);
    return rest === "" || rest === "/" ? mount.mountPoint : join(mount.mountPoint, rest);
  }
  return undefined;
}

/** The cgroup v2 controllers `limits` need: `memory` and/or `cpu`. */
export function neededControllers(limits: JobLimits): string[] {
  return [
    ...(limits.memoryBytes === undefined ? [] : ["memory"]),
    ...(limits.cpus === undefined ? [] : ["cpu"]),
  ];
}

/** `cpu.max` for `cpus` CPUs' worth of time: "QUOTA PERIOD" in microseconds. */
export function cpuMax(cpus: number): string {
  return `${Math.max(1000, Math.round(cpus * CPU_PERIOD_US))} ${CPU_PERIOD_US}`;
}

const FLAG_OF: Record<string, string> = { memory: "--job-memory", cpu: "--job-cpus" };

/** Where to find things; tests point these elsewhere. */
export interface JobCgroupsOptions {
  /**
   * Make the job leaves directly in this cgroup v2 directory, which must
   * already hold no processes, instead of in the runner's own cgroup (the
   * runner does not move itself).
   */
  base?: string;
  /** `/proc/self/cgroup` text. @default {this process's} */
  procCgroup?: string;
  /** `/proc/self/mountinfo` text. @default {this process's} */
  mountinfo?: string;
  /** Jobs run as another user (`--user`): they enter their leaf as root, then drop to the user with `setpriv`. */
  runAs?: boolean;
}

/**
 * `setpriv(1)` (util-linux), which a job run as another user goes through:
 * its wrapper enters the leaf as root (moving a process between cgroups
 * needs write access to their common ancestor), then drops to the user.
 */
const SETPRIV = ["/usr/bin/setpriv", "/bin/setpriv"].find((path) => {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
});

/** A fix to suggest with every refusal. */
const HOW =
  "Per-job limits need the unified cgroup v2 hierarchy (systemd's default since v247; not the hybrid v1 layout) and " +
  "a cgroup delegated to the runner: run it as a systemd service with Delegate=yes, or under " +
  "`systemd-run --scope -p Delegate=yes runner …`";

/**
 * Runs a small shell script; `args` are its `$0`, `$1`, …. Deno lets no
 * program without `--allow-all` read `/proc/self` or touch `/sys` (the
 * runner runs with exactly the `vico` permission set), so every cgroup file
 * is read and written by `/bin/sh`, which the runner may run. The shell is
 * a child, hence in the runner's cgroup (a child starts in its parent's).
 */
export async function sh(script: string, args: readonly string[] = []): Promise<
  { ok: boolean; stdout: string; stderr: string }
> {
  const out = await processOutput("/bin/sh", {
    args: ["-c", script, ...args],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  });
  const dec = new TextDecoder();
  return { ok: out.success, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr).trim() };
}

/** `/proc/self/cgroup` and `/proc/self/mountinfo` of this process (read by a child in the same cgroup). */
export async function procCgroupTexts(): Promise<{ procCgroup: string; mountinfo: string }> {
  const SEP = "--vico-mountinfo--\n";
  const { stdout } = await sh(`cat /proc/self/cgroup; printf -- '${SEP.trim()}\\n'; cat /proc/self/mountinfo`);
  const at = stdout.indexOf(SEP);
  if (at < 0) return { procCgroup: stdout, mountinfo: "" };
  return { procCgroup: stdout.slice(0, at), mountinfo: stdout.slice(at + SEP.length) };
}

/**
 * The loop of the runner's helper shell: reads one finished job's leaf per
 * line; reads its `oom_kill` count, ends whatever the job left running in it
 * (`cgroup.kill`, or one by one before Linux 5.14), waits up to 2 s for it
 * to empty, removes it, and answers "OOM_KILLS REMOVED(1|0)". Builtins only,
 * but for `rmdir` (and `sleep` while a leaf empties).
 */
const REAPER = `
populated() {
  [ -r "$1/cgroup.events" ] || return 1
  while read -r k v; do [ "$k" != populated ] || [ "$v" != 1 ] || return 0; done < "$1/cgroup.events"
  return 1
}
while IFS= read -r L; do
  oom=0 hit=0
  if [ -r "$L/memory.events" ]; then
    # oom_kill counts kills by any OOM killer; oom only the leaf's own limit.
    while read -r k v; do case $k in oom) hit=$v ;; oom_kill) oom=$v ;; esac; done < "$L/memory.events"
  fi
  [ "$hit" -gt 0 ] || oom=0
  if populated "$L"; then
    if [ -e "$L/cgroup.kill" ]; then echo 1 > "$L/cgroup.kill"
    else while read -r p; do kill -9 "$p" 2>/dev/null; done < "$L/cgroup.procs"; fi
    i=0
    while populated "$L" && [ $i -lt 200 ]; do sleep 0.01; i=$((i + 1)); done
  fi
  if [ ! -d "$L" ] || rmdir "$L"; then echo "$oom 1"; else echo "$oom 0"; fi
done
`;

/**
 * One long-lived `/bin/sh` running {@linkcode REAPER}, so that a job's end
 * costs a line each way on a pipe rather than a process start (the runner
 * itself may not touch /sys). Requests are answered in order.
 */
class Reaper {
  readonly #child: Deno.ChildProcess;
  readonly #writer: WritableStreamDefaultWriter<Uint8Array>;
  readonly #reader: ReadableStreamDefaultReader<string>;
  #buffer = "";
  #queue: Promise<unknown> = Promise.resolve();

  constructor() {
    // In a session of its own, like the jobs: a Ctrl-C or a batch system's
    // signal to the runner's process group must not end it.
    const argv = [...(SETSID === undefined ? [] : [SETSID]), "/bin/sh", "-c", REAPER];
    this.#child = startProcess(argv[0], {
      args: argv.slice(1),
      stdin: "piped",
      stdout: "piped",
      stderr: "null",
    });
    this.#writer = this.#child.stdin.getWriter();
    this.#reader = this.#child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  }

  /** Reaps the leaf at `path`: its OOM kills, and whether it is gone. */
  reap(path: string): Promise<{ oomKills: number; removed: boolean }> {
    const answer = this.#queue.then(async () => {
      await this.#writer.write(new TextEncoder().encode(`${path}\n`));
      const [oom, removed] = (await this.#line()).split(" ");
      return { oomKills: Number(oom) || 0, removed: removed === "1" };
    });
    this.#queue = answer.catch(() => {});
    return answer;
  }

  async #line(): Promise<string> {
    for (;;) {
      const at = this.#buffer.indexOf("\n");
      if (at >= 0) {
        const line = this.#buffer.slice(0, at);
        this.#buffer = this.#buffer.slice(at + 1);
        return line;
      }
      const { value, done } = await this.#reader.read();
      if (done) throw new Error("The runner's cgroup helper shell has ended");
      this.#buffer += value;
    }
  }

  /** Ends the helper once the requests so far are answered. */
  async close(): Promise<void> {
    await this.#queue;
    await this.#writer.close().catch(() => {});
    await this.#reader.cancel().catch(() => {});
    await this.#child.status;
  }
}

/**
 * Ends every process in these job leaves (a previous runner life's, found in
 * its state directory) and removes the leaves, as a finished job's are.
 */
export async function endCgroupLeaves(paths: readonly string[]): Promise<void> {
  const reaper = new Reaper();
  try {
    for (const path of paths) await reaper.reap(path).catch(() => {});
  } finally {
    await reaper.close();
  }
}

/** The leaves of one runner's jobs. */
export class JobCgroups implements AsyncDisposable, JobLeaves {
  /** The cgroup v2 directory the job leaves are made in. */
  readonly dir: string;
  /** The limits every job gets. */
  readonly limits: JobLimits;
  /** Shell commands that set a fresh leaf's limits (`$L`: the leaf). */
  readonly #setLimits: string;
  #count = 0;
  readonly #left = new Set<string>();
  #reaper = new Reaper();

  private constructor(dir: string, limits: JobLimits) {
    this.dir = dir;
    this.limits = limits;
    const lines: string[] = [];
    if (limits.memoryBytes !== undefined) {
      lines.push(`echo ${limits.memoryBytes} > "$L/memory.max"`);
      // No swap to spill into (the file exists only with swap accounting),
      // and the whole job goes when the OOM killer picks any of it.
      lines.push(`{ [ ! -e "$L/memory.swap.max" ] || echo 0 > "$L/memory.swap.max"; }`);
      lines.push(`echo 1 > "$L/memory.oom.group"`);
    }
    if (limits.cpus !== undefined) lines.push(`echo ${cpuMax(limits.cpus)} > "$L/cpu.max"`);
    this.#setLimits = lines.join(" && ");
  }

  /**
   * Checks that the limits can be enforced here and prepares the runner's
   * cgroup: moves the runner into `<own>/vico-runner` and enables the
   * controllers for its children.
   *
   * @throws {VicoError} `USAGE` naming what is missing (no cgroup v2, a
   *   controller not available, a cgroup not writable, other processes in it).
   */
  static async setUp(limits: JobLimits, options: JobCgroupsOptions = {}): Promise<JobCgroups> {
    const needed = neededControllers(limits);
    const flags = needed.map((c) => FLAG_OF[c]).join(" and ") || "Per-job cgroups";
    const refuse = (why: string) => new VicoError("USAGE", `${flags}: ${why}. ${HOW}`);
    if (options.runAs && SETPRIV === undefined) {
      throw new VicoError("USAGE", `${flags} with --user: jobs go through setpriv(1), which is not installed`);
    }
    const texts = options.procCgroup !== undefined && options.mountinfo !== undefined
      ? { procCgroup: options.procCgroup, mountinfo: options.mountinfo }
      : await procCgroupTexts();
    const { procCgroup, mountinfo } = texts;
    let dir = options.base;
    if (dir === undefined) {
      const path = parseProcCgroup(procCgroup);
      if (path === undefined) throw refuse("this runner is in no cgroup v2 hierarchy (only cgroup v1 is in use)");
      dir = cgroupV2Dir(procCgroup, mountinfo);
      if (dir === undefined) {
        throw refuse(`the cgroup2 file system holding this runner's cgroup ${path} is not mounted`);
      }
    }
    const read = await sh('cat "$0/cgroup.controllers"', [dir]);
    if (!read.ok) throw refuse(`cannot read the controllers of this runner's cgroup ${dir}: ${read.stderr}`);
    const available = read.stdout.split(/\s+/).filter((c) => c !== "");
    const missing = needed.filter((c) => !available.includes(c));
    if (missing.length > 0) {
      const v1 = parseMountInfo(mountinfo).filter((m) =>
        m.fsType === "cgroup" && missing.some((c) => m.superOptions.includes(c))
      );
      const names = missing.map((c) => `"${c}"`).join(" and ");
      throw refuse(
        `the cgroup v2 ${names} controller${missing.length > 1 ? "s are" : " is"} not available to this runner's ` +
          `cgroup ${dir} (it has: ${available.join(" ") || "none"})` +
          (v1.length > 0
            ? `; ${missing.join(" and ")} ${missing.length > 1 ? "are" : "is"} bound to cgroup v1 at ${
              v1.map((m) => m.mountPoint).join(", ")
            }`
            : ""),
      );
    }
    if (options.base === undefined) {
      // No other process may share the cgroup that hands out controllers
      // (the hierarchy's root excepted): see before moving anything.
      const isRoot = parseProcCgroup(procCgroup) === "/";
      const listed = await sh('echo $$; while read -r p; do echo "$p"; done < "$0/cgroup.procs"', [dir]);
      const [reader, ...procs] = listed.stdout.split("\n").filter((p) => p !== "");
      const others = procs.filter((p) => p !== reader && p !== String(Deno.pid));
      if (!isRoot && others.length > 0) {
        throw refuse(
          `other processes share this runner's cgroup ${dir} (${others.slice(0, 5).join(", ")}${
            others.length > 5 ? ", …" : ""
          }), and a cgroup that hands controllers to its children may hold no processes itself`,
        );
      }
      const own = join(dir, "vico-runner");
      const moved = await sh('mkdir -p "$0" && echo "$1" > "$0/cgroup.procs"', [own, String(Deno.pid)]);
      if (!moved.ok) {
        throw refuse(`cannot make and enter the runner's leaf ${own}: ${moved.stderr} (its cgroup is not delegated)`);
      }
    }
    const enabled = (await sh('cat "$0/cgroup.subtree_control"', [dir])).stdout.split(/\s+/);
    const toEnable = needed.filter((c) => !enabled.includes(c));
    if (toEnable.length > 0) {
      const on = await sh('echo "$1" > "$0/cgroup.subtree_control"', [dir, toEnable.map((c) => `+${c}`).join(" ")]);
      if (!on.ok) {
        throw refuse(
          `cannot enable ${toEnable.join(" and ")} in ${join(dir, "cgroup.subtree_control")}: ${on.stderr} ` +
            "(the runner's cgroup is not delegated to it)",
        );
      }
    }
    // Made last: the helper shell starts where the runner now is, in its leaf.
    const cgroups = new JobCgroups(dir, limits);
    await cgroups.#endStaleLeaves();
    return cgroups;
  }

  /**
   * Ends the job leaves a runner that is gone left here (a SIGKILLed one's):
   * `vico-job-<pid>-<n>` whose runner pid no longer exists. A leaf whose pid
   * is alive may be another runner's in the same cgroup, and is left alone.
   */
  async #endStaleLeaves(): Promise<void> {
    const found = await sh(
      'for L in "$0"/vico-job-*-*; do [ -d "$L" ] || continue; p=${L##*/vico-job-}; p=${p%%-*}; ' +
        '[ -d "/proc/$p" ] || echo "$L"; done',
      [this.dir],
    );
    const stale = found.stdout.split("\n").filter((l) => l !== "");
    if (stale.length === 0) return;
    log.warn("Ending {n} job cgroup(s) left by a runner that is gone: {leaves}", {
      n: stale.length,
      leaves: stale.join(", "),
    });
    for (const path of stale) await this.reap(path);
  }

  /** A fresh leaf's name, for one job; the job's wrapper makes it ({@linkcode JobCgroup.wrap}). */
  next(): JobCgroup {
    const path = join(this.dir, `vico-job-${Deno.pid}-${++this.#count}`);
    this.#left.add(path);
    return new JobCgroup(path, this, this.#setLimits);
  }

  /** What a job killed for its memory is told. */
  get memoryNote(): string {
    return `killed: exceeded --job-memory ${this.limits.memoryText ?? `${this.limits.memoryBytes}`}`;
  }

  /** @internal Reaps a finished job's leaf: its OOM kills; what the job left running there ends. */
  async reap(path: string): Promise<number> {
    for (let attempt = 1;; attempt++) {
      const reaper = this.#reaper;
      try {
        const { oomKills, removed } = await reaper.reap(path);
        if (removed) this.#left.delete(path);
        return oomKills;
      } catch (err) {
        // The helper shell is gone (killed from outside): start another, once per leaf.
        if (attempt > 1) return 0;
        log.warn("The cgroup helper shell ended ({err}); starting a new one", { err: (err as Error).message });
        if (this.#reaper === reaper) this.#reaper = new Reaper();
      }
    }
  }

  /** Removes the leaves that could not be removed when their job ended, and ends the helper shell. */
  async close(): Promise<void> {
    for (const path of [...this.#left]) await this.reap(path);
    await this.#reaper.close();
  }

  /** {@linkcode close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/** One job's leaf. */
export class JobCgroup implements JobLeaf {
  /** The leaf's directory. */
  readonly path: string;
  readonly #owner: JobCgroups;
  readonly #setLimits: string;

  /** @internal Made by {@linkcode JobCgroups.next}. */
  constructor(path: string, owner: JobCgroups, setLimits: string) {
    this.path = path;
    this.#owner = owner;
    this.#setLimits = setLimits;
  }

  /**
   * `argv` behind a shell that makes the leaf, sets its limits and moves
   * itself into it, then execs `argv`: the job's first instruction already
   * runs inside its limits, and nothing it starts is ever outside them. A
   * wrapper that cannot says why on stdout (the job's output) and exits 125.
   * With `runAs`, the wrapper runs as root and drops to the user with
   * `setpriv` after entering the leaf.
   */
  wrap(argv: readonly string[], runAs?: { uid: number; gid: number }): string[] {
    const drop = runAs === undefined
      ? []
      : [SETPRIV!, `--reuid=${runAs.uid}`, `--regid=${runAs.gid}`, "--clear-groups", "--"];
    const enter = ["L=$0", 'mkdir "$L"', ...(this.#setLimits ? [this.#setLimits] : []), 'echo $$ > "$L/cgroup.procs"'];
    return [
      "/bin/sh",
      "-c",
      `{ ${enter.join(" && ")}; } 2>&1 || { echo "vico: cannot put the job in its cgroup $L"; exit 125; }\nexec "$@"`,
      this.path,
      ...drop,
      ...argv,
    ];
  }

  /**
   * After the job's process has exited: whether the OOM killer struck in
   * its leaf; then the end of anything the job left running there (its
   * limits end with it) and the leaf's removal.
   */
  async finish(): Promise<{ oomKilled: boolean }> {
    return { oomKilled: await this.#owner.reap(this.path) > 0 };
  }
}
