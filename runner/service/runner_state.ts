/**
 * A persistent runner's state directory: its stable identity, and the
 * results of jobs that finished while no manager could take them. A result
 * lives here (fsynced) until a manager acknowledges it, so neither a
 * manager restart nor a runner restart loses finished work.
 *
 * ```
 * STATE_DIR/
 *   lock                   held (flock) by the one runner process using the directory; names it
 *   id                     the runner's id (made once)
 *   pending/<n>.json       {"command": …, "tag": …, "status": …, "size": …, "sha256": …} of an undelivered result
 *   pending/<n>.out        its output
 *   pending/<n>.failures   how many times in a row its delivery was refused or dropped (absent: none)
 *   set-aside/<n>.*        results set aside (no manager wants them: handed out by another run, or
 *   set-aside/<n>.reason   refused): the files above, and why, in a line of text; never sent again
 *   running/<life>/owner   "<pid> <start time>" of the runner process of one life
 *   running/<life>/<pgid>.json   {"pgid": …, "id": …, "cgroup"?: …} of a job running now
 * ```
 *
 * A result's tag (`run=… key=… attempt=…`, from the manager that handed the
 * job out) binds it to that hand-out: a manager takes it back only if it
 * issued it.
 *
 * A job's record is written before the job runs and removed once it and its
 * process group have ended (see runner/exec/job_reaper.ts): what a runner killed
 * with SIGKILL left running is found there by the next runner on the same
 * directory.
 *
 * One runner process at a time: a second one on the same directory would
 * share its id and number its kept results from the same count, overwriting
 * the first one's (whose handle would then deliver the other job's output).
 * {@linkcode RunnerState.open} refuses it with `in-use`, naming the holder.
 * And only this user's: a directory others own or may read or write is
 * refused as `unsafe` (they could plant a kept result for the runner to
 * deliver as a job's).
 *
 * @module
 */

import { createHash } from "node:crypto";
import { join } from "node:path";
import { defaultStateDir as defaultRoleStateDir } from "../../io/state_dir.ts";
import { writeFileAtomic } from "../../io/atomic_write.ts";
import { copyExact } from "../../io/copy_exact.ts";
import { writeAll } from "../../io/write_all.ts";
import { logger } from "../../util/log.ts";
import { describeHolder, type LockHolder, readHolder, writeHolder } from "../../io/lock_holder.ts";
import { VicoError } from "../../core/errors.ts";

import type { JobLedger, JobRecord } from "../exec/process_runner.ts";

/** Deliveries of a kept result refused or dropped in a row before it is set aside. */
export const MAX_DELIVERY_FAILURES = 3;

const LOCK_FILE = "lock";
const PENDING_DIR = "pending";
const SET_ASIDE_DIR = "set-aside";
/** What follows a result's name in its files. */
const RESULT_FILES = [".json", ".out", ".failures"] as const;

const log = logger("runner");

/** An undelivered result, readable like a job's spooled output. */
export interface StoredResult {
  /** Its name in the state directory (`pending/<name>.json`). */
  readonly name: string;
  /** How many times in a row its delivery was refused or dropped. */
  readonly failures: number;
  /** The job's command line. */
  readonly command: string;
  /** The tag of its hand-out, if the manager gave one. */
  readonly tag?: string;
  /** Its exit status. */
  readonly status: number;
  /** The runner stopped it at its --timeout. */
  readonly timedOut?: boolean;
  /** Output size. */
  readonly size: number;
  /** Where it is kept (without `.json` / `.out`). */
  readonly base: string;
  /** Streams the output. */
  pipeTo(sink: (chunk: Uint8Array) => Promise<void>): Promise<void>;
  /** Forgets it (after the manager acknowledged it). */
  dispose(): Promise<void>;
}

/** A finished binary task kept for delivery. */
export interface HeldTaskRecord {
  /** The task's key. */
  key: string;
  /** Its last run's status. */
  status: number;
  /** Files to return, in order. */
  rets: string[];
  /** Its task directory. */
  dir: string;
}

/** A runner life's {@linkcode JobLedger}, which it closes when it ends. */
export interface LifeLedger extends JobLedger {
  /** Forgets this life's records unless some job is still recorded as running. */
  close(): Promise<void>;
}

/** One runner life's records in a state directory ({@linkcode RunnerState.lives}). */
export interface RunnerLife {
  /** Its directory's name under `running/`. */
  readonly life: string;
  /** `"<pid> <start time>"` of its runner process ("" when unknown). */
  readonly owner: string;
  /** The jobs it had running. */
  readonly jobs: JobRecord[];
}

/** Something with bytes to stream, like an output spool. */
export interface Streamable {
  /** Size in bytes. */
  readonly size: number;
  /** Streams the bytes. */
  pipeTo(sink: (chunk: Uint8Array) => Promise<void>): Promise<void>;
}

/** The default state directory: `$XDG_STATE_HOME/vico/runner`, or `~/.local/state/vico/runner`. */
export function defaultStateDir(): string {
  return defaultRoleStateDir("runner");
}

/** Why a state directory cannot be opened. */
export type RunnerStateProblem =
  /** Another runner process holds its lock. */
  | "in-use"
  /** Other users may write or read it (or own it): they could plant results for the runner to deliver. */
  | "unsafe";

/** A state directory that cannot be opened ({@linkcode RunnerState.open}). */
export class RunnerStateError extends VicoError {
  /** What kind of problem. */
  readonly problem: RunnerStateProblem;
  /** For `in-use`: the process holding it, if its lock file says. */
  readonly holder?: LockHolder;

  /** @param problem what kind @param message the whole story, naming the directory @param holder who holds it */
  constructor(problem: RunnerStateProblem, message: string, holder?: LockHolder) {
    super(problem === "unsafe" ? "UNSAFE" : "REFUSED", message);
    this.name = "RunnerStateError";
    this.problem = problem;
    this.holder = holder;
  }
}

/** A runner's state directory, held by this process until {@linkcode RunnerState.close}. */
export class RunnerState {
  /** The directory. */
  readonly dir: string;
  /** The runner's stable id. */
  readonly id: string;
  #seq = 0;
  #lock: Deno.FsFile;
  /** The lock file's identity while held (see {@linkcode lost}). */
  #held: Deno.FileInfo | undefined;
  #closed = false;
  /** Kept results whose output this life checked against its record (or wrote itself). */
  readonly #checked = new Set<string>();

  private constructor(dir: string, id: string, seq: number, lock: Deno.FsFile) {
    this.dir = dir;
    this.id = id;
    this.#seq = seq;
    this.#lock = lock;
  }

  /**
   * Opens (creating) a state directory and holds it; makes an id the first time.
   *
   * @throws {RunnerStateError} `in-use` when another runner process holds it;
   *   `unsafe` when another user owns it or others may read or write it.
   */
  static async open(dir: string): Promise<RunnerState> {
    await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
    const info = await Deno.stat(dir);
    if (info.uid !== null && info.uid !== Deno.uid()) {
      throw new RunnerStateError(
        "unsafe",
        `State directory ${dir} is owned by uid ${info.uid}, not by this runner's uid ${Deno.uid()}: ` +
          `its owner could plant results for it to deliver; give the runner a --state-dir of its own`,
      );
    }
    if (info.mode !== null && (info.mode & 0o077) !== 0) {
      throw new RunnerStateError(
        "unsafe",
        `State directory ${dir} is open to other users (mode ${(info.mode & 0o777).toString(8)}): they could ` +
          `plant results for the runner to deliver or read jobs' outputs; make it private with: chmod 700 ${dir}`,
      );
    }
    const lockPath = join(dir, LOCK_FILE);
    const lock = await Deno.open(lockPath, { read: true, write: true, create: true, mode: 0o600 });
    try {
      if (!(await lock.tryLock(true))) {
        const holder = await readHolder(lockPath);
        throw new RunnerStateError(
          "in-use",
          `State directory ${dir} is in use by another runner: ${describeHolder(holder)}. ` +
            `Give each --persist runner a --state-dir of its own`,
          holder,
        );
      }
      await writeHolder(lock);
      return await RunnerState.#openHeld(dir, lock);
    } catch (err) {
      lock.close();
      throw err;
    }
  }

  static async #openHeld(dir: string, lock: Deno.FsFile): Promise<RunnerState> {
    await Deno.mkdir(join(dir, "pending"), { recursive: true, mode: 0o700 });
    await Deno.mkdir(join(dir, "tasks"), { recursive: true, mode: 0o700 });
    await Deno.mkdir(join(dir, "set-aside"), { recursive: true, mode: 0o700 });
    await Deno.mkdir(join(dir, "running"), { recursive: true, mode: 0o700 });
    const idPath = join(dir, "id");
    let id: string;
    try {
      id = (await Deno.readTextFile(idPath)).trim();
    } catch {
      id = `${Deno.hostname().replace(/[^A-Za-z0-9._-]/g, "-").slice(0, 40)}-${crypto.randomUUID().slice(0, 8)}`;
      await writeFileAtomic(idPath, id + "\n");
    }
    let seq = 0;
    // Names set aside are never reused either.
    for (const sub of [PENDING_DIR, SET_ASIDE_DIR]) {
      let entries: Deno.DirEntry[];
      try {
        entries = [...Deno.readDirSync(join(dir, sub))];
      } catch (err) {
        if (err instanceof Deno.errors.NotFound) continue;
        throw err;
      }
      for (const entry of entries) {
        const n = parseInt(entry.name, 10);
        if (Number.isFinite(n)) seq = Math.max(seq, n);
      }
    }
    // After counting: not even the name of a result cut short is used again.
    await finishInterrupted(dir);
    const state = new RunnerState(dir, id, seq, lock);
    // Each kept result is checked against its record now, once, not inside a
    // connection's opening (a large output takes a while to hash).
    await state.pending();
    return state;
  }

  /**
   * Why this directory is no longer this runner's, or undefined while it
   * is: its lock file is gone or another file (the directory was removed, or
   * replaced, under the runner). Its kept results and job records went with
   * it, and another runner may open what is there now. One `lstat` (the
   * open lock file's own identity is asked once).
   */
  lost(): string | undefined {
    if (this.#closed) return undefined;
    let held = this.#held;
    if (held === undefined) {
      try {
        // The open lock file's identity: asked once (an open file keeps its inode).
        held = this.#held = this.#lock.statSync();
      } catch {
        return undefined; // closed: nothing to tell
      }
    }
    try {
      const there = Deno.lstatSync(join(this.dir, LOCK_FILE));
      if (there.ino === held.ino && there.dev === held.dev) return undefined;
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound) && !(err instanceof Deno.errors.NotADirectory)) return undefined;
    }
    return `State directory ${this.dir} was removed or replaced under this runner (its lock file is gone): ` +
      `its kept results and job records are gone with it`;
  }

  /** Lets the directory go: another runner process may open it now. */
  close(): void {
    this.#closed = true;
    try {
      this.#lock.close();
    } catch {
      // Already closed.
    }
  }

  /** {@linkcode RunnerState.close}, for `using`. */
  [Symbol.dispose](): void {
    this.close();
  }

  /** Keeps a finished job's result until a manager takes it. Durable when this resolves. */
  async store(
    job: { command: string; tag?: string },
    status: number,
    output: Streamable,
    timedOut = false,
  ): Promise<StoredResult> {
    const n = ++this.#seq;
    const base = join(this.dir, "pending", String(n).padStart(8, "0"));
    let meta: KeptMeta;
    try {
      const file = await Deno.open(base + ".out.tmp", { write: true, createNew: true });
      const hash = createHash("sha256");
      let size = 0;
      try {
        await output.pipeTo((chunk) => {
          hash.update(chunk);
          size += chunk.length;
          return writeAll(file, chunk);
        });
        await file.sync();
      } finally {
        file.close();
      }
      await Deno.rename(base + ".out.tmp", base + ".out");
      // The .json marks the result complete: written last, under a temporary
      // name. Its size and SHA-256 tell a damaged output from a whole one.
      meta = {
        command: job.command,
        status,
        ...(job.tag ? { tag: job.tag } : {}),
        ...(timedOut ? { timedOut } : {}),
        size,
        sha256: hash.digest("hex"),
      };
      await writeFileAtomic(base + ".json", JSON.stringify(meta));
    } catch (err) {
      // Not kept (a full disk, a directory gone or read-only): nothing of it
      // stays to fill the disk further; the caller says it is lost.
      for (const rest of [".json.tmp", ".out", ".out.tmp"]) await Deno.remove(base + rest).catch(() => {});
      throw err;
    }
    this.#checked.add(base);
    return storedResult(base, meta, meta.size!);
  }

  /**
   * Counts one more refused or dropped delivery of `result` (durably, so a
   * restart does not reset it); resolves with the count in a row.
   */
  async noteFailedDelivery(result: StoredResult): Promise<number> {
    const failures = result.failures + 1;
    const path = join(this.dir, PENDING_DIR, result.name + ".failures");
    await writeFileAtomic(path, `${failures}\n`);
    return failures;
  }

  /**
   * Sets a kept result aside: moves its files to `STATE_DIR/set-aside/`
   * with a `.reason` file saying why, and logs a WARN saying where. From
   * then on it is never announced nor delivered, and blocks nothing; its
   * output stays for a person to look at. For any result no manager will
   * take (refused or dropped too often, over a manager's output limit, or
   * not wanted). Resolves with the path of its output there.
   */
  async setAside(result: StoredResult, reason: string): Promise<string> {
    const where = await this.#moveAside(result.name, reason);
    log.warn("Set aside the kept result of {job}: {reason}; no manager is offered it again. Its output is in {where}", {
      job: result.command,
      reason,
      where,
    });
    return where;
  }

  /** {@linkcode RunnerState.setAside}'s work, for the result named `name`: the path of its output there. */
  async #moveAside(name: string, reason: string): Promise<string> {
    const aside = join(this.dir, SET_ASIDE_DIR);
    await Deno.mkdir(aside, { recursive: true, mode: 0o700 });
    const reasonPath = join(aside, name + ".reason");
    const moved: string[] = [];
    try {
      await Deno.writeTextFile(reasonPath, reason.replace(/[\r\n]+/g, " ") + "\n");
      // The .json last: once it is gone from pending/, the result is no longer kept there.
      for (const ext of [".out", ".failures", ".json"]) {
        try {
          await Deno.rename(join(this.dir, PENDING_DIR, name + ext), join(aside, name + ext));
          moved.push(ext);
        } catch (err) {
          if (!(err instanceof Deno.errors.NotFound)) throw err;
        }
      }
    } catch (err) {
      // Not set aside (a full disk, a directory gone or read-only): it stays
      // kept, whole, as it was; the next start would otherwise take a
      // leftover .reason for a setting-aside begun, and finish it.
      for (const ext of moved.reverse()) {
        await Deno.rename(join(aside, name + ext), join(this.dir, PENDING_DIR, name + ext)).catch(
          () => {},
        );
      }
      await Deno.remove(reasonPath).catch(() => {});
      throw err;
    }
    return join(aside, name + ".out");
  }

  /**
   * Binary: keeps the record of a finished task whose owner was lost: its
   * key, status, the files to return and its directory (which stays).
   */
  async keepTask(task: HeldTaskRecord): Promise<void> {
    const path = join(this.dir, "tasks", `${task.key.replace(/[^A-Za-z0-9._-]/g, "_")}.json`);
    await writeFileAtomic(path, JSON.stringify(task));
  }

  /** Binary: the finished tasks kept for delivery. */
  async heldTasks(): Promise<HeldTaskRecord[]> {
    const out: HeldTaskRecord[] = [];
    for (const entry of Deno.readDirSync(join(this.dir, "tasks"))) {
      if (!entry.name.endsWith(".json")) continue;
      try {
        out.push(JSON.parse(await Deno.readTextFile(join(this.dir, "tasks", entry.name))));
      } catch {
        // A record torn by a crash: the task will simply run again.
      }
    }
    return out;
  }

  /** Binary: forgets a kept task (delivered, or refused by the manager). */
  async forgetTask(key: string): Promise<void> {
    await Deno.remove(join(this.dir, "tasks", `${key.replace(/[^A-Za-z0-9._-]/g, "_")}.json`)).catch(() => {});
  }

  /**
   * The undelivered results, oldest first; one being stored now is not
   * among them yet. A damaged one (its `.json` not a record, its output
   * missing, of another size than its record gives, or with another SHA-256:
   * checked once a life) is set aside with the reason, never offered: its
   * bytes are not the job's output.
   */
  async pending(): Promise<StoredResult[]> {
    const dir = join(this.dir, "pending");
    const names = [...Deno.readDirSync(dir)].map((e) => e.name).sort();
    const out: StoredResult[] = [];
    for (const name of names) {
      // A .tmp may be a result being stored right now: only open() sweeps them.
      if (!name.endsWith(".json")) continue;
      const base = join(dir, name.slice(0, -".json".length));
      let found: KeptMeta & { size: number } | string | undefined;
      try {
        found = await this.#readKept(base);
      } catch (err) {
        // Gone meanwhile (delivered and forgotten): nothing to offer.
        if (err instanceof Deno.errors.NotFound) continue;
        throw err;
      }
      if (typeof found === "string") {
        await this.#setAsideDamaged(base, found);
        continue;
      }
      const failures = Number(await Deno.readTextFile(base + ".failures").catch(() => "0")) || 0;
      out.push(storedResult(base, found, found.size, failures));
    }
    return out;
  }

  /** The kept result at `base` with its output's size, or what is damaged about it. */
  async #readKept(base: string): Promise<(KeptMeta & { size: number }) | string> {
    const text = await Deno.readTextFile(base + ".json");
    let meta: unknown;
    try {
      meta = JSON.parse(text);
    } catch {
      return "its record is not JSON";
    }
    const problem = metaProblem(meta);
    if (problem !== undefined) return problem;
    const kept = meta as KeptMeta;
    let info: Deno.FileInfo;
    try {
      info = await Deno.lstat(base + ".out");
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
      // Its .json gone too: forgotten meanwhile, not damaged.
      await Deno.lstat(base + ".json");
      return "its output file is missing";
    }
    if (!info.isFile) return "its output is not a plain file";
    if (kept.size !== undefined && info.size !== kept.size) {
      return `its output is ${info.size} bytes, its record says ${kept.size}`;
    }
    if (kept.sha256 !== undefined && !this.#checked.has(base)) {
      const hash = createHash("sha256");
      using file = await Deno.open(base + ".out", { read: true });
      await copyExact(file, info.size, (chunk) => Promise.resolve(void hash.update(chunk)), {
        shortMessage: `${base}.out is shorter than ${info.size} bytes`,
      });
      if (hash.digest("hex") !== kept.sha256) return "its output's SHA-256 is not the one its record gives";
      this.#checked.add(base);
    }
    return { ...kept, size: info.size };
  }

  /** Sets aside a kept result found damaged, saying why; one that cannot be is left where it is, saying so. */
  async #setAsideDamaged(base: string, problem: string): Promise<void> {
    const name = base.slice(base.lastIndexOf("/") + 1);
    const reason = `damaged: ${problem}`;
    try {
      const where = await this.#moveAside(name, reason);
      log.warn("Set aside the kept result {name}: {reason}; it is not delivered. What is left of it is in {where}", {
        name,
        reason,
        where,
      });
    } catch (err) {
      log.error("The kept result {name} is {reason}, and could not be set aside: {err}; it is not delivered", {
        name,
        reason,
        err: (err as Error).message,
      });
    }
  }

  /**
   * The ledger of this runner life's jobs, in `running/<life>/`, whose
   * `owner` file names the runner process (`"<pid> <start time>"`). Job
   * records are written without fsync: a power loss ends their processes too.
   */
  async ledger(life: string, owner: string): Promise<LifeLedger> {
    const dir = join(this.dir, "running", life);
    await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
    await Deno.writeTextFile(join(dir, "owner"), owner + "\n");
    const path = (job: JobRecord) => join(dir, `${job.pgid}.json`);
    return {
      close: async () => {
        let jobs: Deno.DirEntry[];
        try {
          jobs = [...Deno.readDirSync(dir)].filter((e) => e.name.endsWith(".json"));
        } catch (err) {
          // Removed with the state directory: nothing left to forget.
          if (err instanceof Deno.errors.NotFound) return;
          throw err;
        }
        if (jobs.length === 0) await Deno.remove(dir, { recursive: true }).catch(() => {});
      },
      started: (job) => Deno.writeTextFileSync(path(job), JSON.stringify(job)),
      ended: (job) => {
        try {
          Deno.removeSync(path(job));
        } catch {
          // Already gone.
        }
      },
    };
  }

  /** The runner lives recorded in `running/`: each one's owner and the jobs it had running. */
  async lives(): Promise<RunnerLife[]> {
    const out: RunnerLife[] = [];
    for (const entry of Deno.readDirSync(join(this.dir, "running"))) {
      if (!entry.isDirectory) continue;
      const dir = join(this.dir, "running", entry.name);
      const owner = (await Deno.readTextFile(join(dir, "owner")).catch(() => "")).trim();
      const jobs: JobRecord[] = [];
      for (const file of Deno.readDirSync(dir)) {
        if (!file.name.endsWith(".json")) continue;
        try {
          const job = JSON.parse(await Deno.readTextFile(join(dir, file.name)));
          if (Number.isSafeInteger(job.pgid) && job.pgid > 1 && typeof job.id === "string") jobs.push(job);
        } catch {
          // Torn by a crash while being written: that job had not started (it waits for its record).
        }
      }
      out.push({ life: entry.name, owner, jobs });
    }
    return out;
  }

  /** Forgets a runner life's records (its jobs have been ended). */
  async forgetLife(life: string): Promise<void> {
    await Deno.remove(join(this.dir, "running", life), { recursive: true }).catch(() => {});
  }
}

/**
 * Ends what a runner killed between two steps left in a state directory it
 * held (no store, dispose or setAside runs now: this process holds the
 * lock and has not started). A result whose `.reason` is in `set-aside/`
 * was being set aside: the rest of its files follow it. In `pending/`, a
 * `.tmp` is a store cut short, and an `.out` or `.failures` without its
 * `.json` a store cut short before its `.json` or a dispose after it: none
 * is a kept result (the `.json` marks one), so they are removed.
 */
async function finishInterrupted(dir: string): Promise<void> {
  const pending = join(dir, PENDING_DIR);
  const aside = join(dir, SET_ASIDE_DIR);
  for (const entry of Deno.readDirSync(aside)) {
    if (!entry.name.endsWith(".reason")) continue;
    const name = entry.name.slice(0, -".reason".length);
    for (const ext of [".out", ".failures", ".json"]) {
      await Deno.rename(join(pending, name + ext), join(aside, name + ext)).catch((err) => {
        if (!(err instanceof Deno.errors.NotFound)) throw err;
      });
    }
  }
  const names = new Set([...Deno.readDirSync(pending)].map((e) => e.name));
  for (const name of names) {
    const dot = name.indexOf(".");
    const base = dot < 0 ? name : name.slice(0, dot);
    if (name.endsWith(".tmp") || (name !== base + ".json" && !names.has(base + ".json"))) {
      await Deno.remove(join(pending, name)).catch(() => {});
    }
  }
}

/** What a kept result's `.json` holds (`size` and `sha256` are absent in an older runner's). */
interface KeptMeta {
  command: string;
  status: number;
  tag?: string;
  timedOut?: boolean;
  size?: number;
  sha256?: string;
}

/** What is wrong with a parsed `.json`, if it is not a {@linkcode KeptMeta}. */
function metaProblem(meta: unknown): string | undefined {
  if (typeof meta !== "object" || meta === null || Array.isArray(meta)) return "its record is not an object";
  const m = meta as Record<string, unknown>;
  if (typeof m.command !== "string" || m.command === "") return "its record has no valid command";
  if (!Number.isSafeInteger(m.status) || (m.status as number) < 0) return "its record has no valid status";
  if (m.tag !== undefined && typeof m.tag !== "string") return "its record has no valid tag";
  if (m.timedOut !== undefined && typeof m.timedOut !== "boolean") return "its record has no valid timedOut";
  if (m.size !== undefined && (!Number.isSafeInteger(m.size) || (m.size as number) < 0)) {
    return "its record has no valid size";
  }
  if (m.sha256 !== undefined && (typeof m.sha256 !== "string" || !/^[0-9a-f]{64}$/.test(m.sha256))) {
    return "its record has no valid sha256";
  }
  return undefined;
}

/** A kept result at `base` (`.json` and `.out`). */
function storedResult(
  base: string,
  meta: KeptMeta,
  size: number,
  failures = 0,
): StoredResult {
  return {
    base,
    name: base.slice(base.lastIndexOf("/") + 1),
    failures,
    command: meta.command,
    status: meta.status,
    ...(meta.tag !== undefined ? { tag: meta.tag } : {}),
    ...(meta.timedOut ? { timedOut: true } : {}),
    size,
    async pipeTo(sink) {
      using file = await Deno.open(base + ".out", { read: true });
      await copyExact(file, size, sink, { shortMessage: `${base}.out is shorter than ${size} bytes` });
    },
    async dispose() {
      for (const ext of RESULT_FILES) await Deno.remove(base + ext).catch(() => {});
    },
  };
}
