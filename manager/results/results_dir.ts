/**
 * A results directory vico owns. vico deletes or moves only what it made:
 *
 * - **Marker.** A directory vico creates (or finds empty) gets a marker file,
 *   {@linkcode MARKER_FILE}, naming the format. A directory is taken only if
 *   it has the marker, is empty, or is one an earlier vico made before
 *   markers existed (a `journal.jsonl` and nothing but `out/`, `files/` and
 *   `tmp/` beside it; it is marked then). Anything else is refused untouched.
 * - **Lock.** One manager at a time: the claimant holds an exclusive `flock`
 *   on {@linkcode LOCK_FILE} for its whole run (the kernel drops it when the
 *   process ends, however it ends) and writes who it is (pid, host, since
 *   when) into it, so that a second manager can name the holder. Nothing is
 *   written before the lock is held, except the lock file itself.
 * - **Rotation.** `--fresh` moves aside only a directory claimed this way,
 *   never the current directory or one that contains it.
 *
 * Every failure is a {@linkcode ResultsDirError}: the manager exits 3 on it.
 *
 * @module
 */

import { basename, dirname, isAbsolute, join, relative, resolve } from "node:path";
import { VicoError } from "../../core/errors.ts";
import { describeHolder, type LockHolder, readHolder, writeHolder } from "../../io/lock_holder.ts";
import { writeFileAtomic } from "../../io/atomic_write.ts";

/** The marker file of a vico results directory. */
export const MARKER_FILE = ".vico-results";
/** The lock file: locked by the manager running on the directory, naming it. */
export const LOCK_FILE = ".vico-lock";
/** The results directory format this vico writes (in the marker). */
export const RESULTS_FORMAT = 1;

/** What a results directory made by a vico older than markers may contain. */
const LEGACY_ENTRIES = new Set(["journal.jsonl", "out", "files", "tmp"]);
/** The marker while it is written (a claim cut short may leave it; it is replaced). */
const MARKER_TMP = `${MARKER_FILE}.tmp`;
/** The files vico opens by name in a results directory: each must be a plain file. */
const FIXED_NAMES = [MARKER_FILE, LOCK_FILE, "journal.jsonl"];
/** The directories vico writes into in a results directory: each must be a directory, not a link. */
const FIXED_DIRS = ["out", "files", "tmp"];
/** How many times a claim starts again on a directory moved under it before giving up. */
const CLAIM_ATTEMPTS = 8;

/** The manager holding a results directory, as its lock file says. */
export type { LockHolder };

/** Why a results directory cannot be used. */
export type ResultsDirProblem =
  /** Another manager holds its lock. */
  | "in-use"
  /** It is not a vico results directory (or not a directory), or cannot be moved aside. */
  | "not-ours"
  /** A default results directory that holds another job list's results (see `checkSameList`, manager/jobs/resume.ts). */
  | "another-list"
  /** An I/O failure (disk full, permissions, …). */
  | "unusable";

/** A results directory that cannot be claimed, rotated or written at start. */
export class ResultsDirError extends VicoError {
  /** What kind of problem. */
  readonly problem: ResultsDirProblem;
  /** For `in-use`: who holds it, if its lock file says. */
  readonly holder?: LockHolder;

  /**
   * @param problem What kind of problem.
   * @param message The whole story, naming the directory.
   * @param options `holder` for `in-use`; `cause`.
   */
  constructor(problem: ResultsDirProblem, message: string, options: ErrorOptions & { holder?: LockHolder } = {}) {
    super("REFUSED", message, options);
    this.name = "ResultsDirError";
    this.problem = problem;
    this.holder = options.holder;
  }
}

/**
 * Wraps an I/O failure during start-up as an `unusable` {@linkcode ResultsDirError}
 * (errors that already are one pass through).
 */
export function unusable(dir: string, doing: string, err: unknown): ResultsDirError {
  if (err instanceof ResultsDirError) return err;
  const why = err instanceof Error ? err.message : String(err);
  return new ResultsDirError("unusable", `Results directory ${dir} is unusable: cannot ${doing}: ${why}`, {
    cause: err,
  });
}

/**
 * A results directory claimed by this process: marked as vico's and locked
 * until {@linkcode ResultsDir.release} (or the process's end).
 *
 * @example
 * ```ts ignore
 * const dir = await ResultsDir.claim("jobs.results");
 * try {
 *   // … write results under dir.path …
 * } finally {
 *   dir.release();
 * }
 * ```
 */
export class ResultsDir {
  /** The directory, absolute. */
  readonly path: string;
  /** It did not exist, or was empty, before this claim. */
  readonly created: boolean;
  /** It was made by a vico older than markers, and marked now. */
  readonly adopted: boolean;
  readonly #lock: Deno.FsFile;
  readonly #durable: boolean;
  #released = false;

  /** This claim made the directory itself (it did not exist). */
  readonly #made: boolean;

  private constructor(
    path: string,
    lock: Deno.FsFile,
    created: boolean,
    adopted: boolean,
    durable: boolean,
    made: boolean,
  ) {
    this.path = path;
    this.#lock = lock;
    this.created = created;
    this.adopted = adopted;
    this.#durable = durable;
    this.#made = made;
  }

  /**
   * Claims `path`: creates it if missing, refuses it unless it is vico's (or
   * empty), takes its lock without waiting and marks it.
   *
   * @param path The results directory.
   * @param options `durable: false` skips fsyncs.
   * @throws {ResultsDirError} `not-ours`, `in-use` (naming the holder) or `unusable`.
   */
  static async claim(path: string, options: { durable?: boolean } = {}): Promise<ResultsDir> {
    const durable = options.durable ?? true;
    // A `--fresh` claimant may move the directory aside between any two of
    // our steps; we then start again on whatever is at the path now.
    for (let attempt = 1;; attempt++) {
      const claimed = await ResultsDir.#claimOnce(path, durable);
      if (claimed !== "moved") return claimed;
      if (attempt === CLAIM_ATTEMPTS) {
        throw new ResultsDirError(
          "unusable",
          `Results directory ${path} is unusable: it was moved or replaced ${attempt} times while being claimed`,
        );
      }
    }
  }

  /** One try at {@linkcode claim}: `"moved"` if the directory was moved or replaced under it. */
  static async #claimOnce(path: string, durable: boolean): Promise<ResultsDir | "moved"> {
    const dir = resolve(path);
    let made = false;
    try {
      const info = await Deno.stat(dir).catch((err) => {
        if (err instanceof Deno.errors.NotFound) return undefined;
        throw err;
      });
      if (info === undefined) {
        await Deno.mkdir(dirname(dir), { recursive: true });
        made = await Deno.mkdir(dir).then(() => true, (err) => {
          if (err instanceof Deno.errors.AlreadyExists) return false; // another claimant made it first
          throw err;
        });
        // Not there for stat, there for mkdir: a symbolic link to nothing (no claimant makes one of those).
        const target = !made && (await Deno.lstat(dir).catch(() => undefined))?.isSymlink
          ? await Deno.stat(dir).then(() => true, () => false)
          : true;
        if (!target) {
          throw new ResultsDirError(
            "not-ours",
            `Results directory ${path} is a symbolic link to ${await Deno.readLink(dir)}, which does not exist`,
          );
        }
        if (made && durable) await syncDir(dirname(dir));
      } else if (!info.isDirectory) {
        throw new ResultsDirError("not-ours", `Results directory ${path} is not a directory`);
      }
    } catch (err) {
      throw unusable(path, "create it", err);
    }
    // The directory judged, by identity: the lock must be taken in this one.
    const seen = await Deno.stat(dir).catch(() => undefined);
    if (seen === undefined) return "moved";
    const kind = made ? "empty" : await classify(dir, path);
    if (kind === "moved") return "moved";
    const lockPath = join(dir, LOCK_FILE);
    let lock: Deno.FsFile;
    let createdLock = false;
    try {
      lock = await Deno.open(lockPath, { read: true, write: true, createNew: true }).then((f) => {
        createdLock = true;
        return f;
      }, (err) => {
        if (err instanceof Deno.errors.AlreadyExists) return Deno.open(lockPath, { read: true, write: true });
        throw err;
      });
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) return "moved";
      throw unusable(path, `open ${LOCK_FILE}`, err);
    }
    try {
      if (!(await lock.tryLock(true))) {
        const holder = await readHolder(lockPath);
        throw new ResultsDirError(
          "in-use",
          holder === undefined
            ? `Results directory ${path} is in use by another manager ${describeHolder(holder)}`
            : `Results directory ${path} is in use by another manager: ${describeHolder(holder)}`,
          { holder },
        );
      }
      // The lock protects the path only if the file we hold is still the one
      // there: a rotation may have moved it aside after we opened it.
      if (!(await sameFile(lock, lockPath))) {
        lock.close();
        return "moved";
      }
      // And the directory must still be the one judged: another may have
      // been put at the path between the judging and the lock.
      const now = await Deno.stat(dir).catch(() => undefined);
      if (now === undefined || now.dev !== seen.dev || now.ino !== seen.ino) {
        // A lock file made here by this claim goes, before its lock is let
        // go (so that no one can take it meanwhile and think it the path's).
        if (createdLock) await Deno.remove(lockPath).catch(() => {});
        lock.close();
        return "moved";
      }
      // Ours now: say who holds it, then mark it (only the holder writes the marker).
      await writeHolder(lock);
      if (kind !== "marked") await writeMarker(dir, durable);
      return new ResultsDir(dir, lock, kind === "empty", kind === "legacy", durable, made);
    } catch (err) {
      lock.close();
      throw unusable(path, "mark and lock it", err);
    }
  }

  /**
   * Moves this directory aside (to `PATH.<date>`) and claims a new, empty
   * one at its path; this claim is released. Call it only once everything
   * else at start-up has succeeded.
   *
   * @returns The new directory, and where the old one went (`undefined`
   *   when there was nothing to move: it was empty).
   * @throws {ResultsDirError} `not-ours` for the current directory (or one
   *   that contains it), `in-use` if another manager took the new one first,
   *   `unusable` on I/O failure.
   */
  async rotate(): Promise<{ dir: ResultsDir; movedTo?: string }> {
    const entries = [...Deno.readDirSync(this.path)].filter((e) =>
      e.name !== MARKER_FILE && e.name !== LOCK_FILE && e.name !== MARKER_TMP
    );
    if (entries.length === 0) return { dir: this };
    const within = relative(this.path, Deno.cwd());
    if (!(within === ".." || within.startsWith("../") || isAbsolute(within))) {
      throw new ResultsDirError(
        "not-ours",
        `Results directory ${this.path}: --fresh cannot move it aside: it is the current directory or contains ` +
          "it; run from elsewhere or name another --results",
      );
    }
    const movedTo = `${this.path}.${new Date().toISOString().replace(/[:.]/g, "-")}`;
    try {
      await Deno.rename(this.path, movedTo);
      if (this.#durable) await syncDir(dirname(this.path));
    } catch (err) {
      throw unusable(this.path, `move it aside to ${basename(movedTo)}`, err);
    }
    // Claim the new one before letting go of the old, so that a claimant
    // that opened the old lock file and waits for it finds it moved.
    try {
      return { dir: await ResultsDir.claim(this.path, { durable: this.#durable }), movedTo };
    } finally {
      this.release();
    }
  }

  /**
   * Lets go of a claim whose start failed before anything was written (the
   * port in use, say): a directory this claim made itself goes again, with
   * the marker and lock it put there, so that a mistyped `--results` leaves
   * nothing behind. One that existed before, or that holds anything else
   * now, stays as it is.
   */
  abandon(): void {
    if (this.#made && !this.#released) {
      for (const name of [MARKER_FILE, LOCK_FILE]) {
        try {
          Deno.removeSync(join(this.path, name));
        } catch {
          // Gone already: the directory's own removal says the rest.
        }
      }
      try {
        Deno.removeSync(this.path); // not recursive: anything else in it keeps it
      } catch {
        // Not empty, or gone: left as it is.
      }
    }
    this.release();
  }

  /** Releases the lock (the process's end releases it too). */
  release(): void {
    if (this.#released) return;
    this.#released = true;
    this.#lock.close();
  }
}

/**
 * How an existing directory stands, read without touching it; `"moved"` if
 * what it listed vanished while being read (it was moved aside).
 */
async function classify(dir: string, shown: string): Promise<"marked" | "empty" | "legacy" | "moved"> {
  const names: string[] = [];
  try {
    for await (const e of Deno.readDir(dir)) names.push(e.name);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return "moved";
    throw unusable(shown, "read it", err);
  }
  const others = names.filter((n) => n !== MARKER_FILE && n !== LOCK_FILE && n !== MARKER_TMP);
  // The names vico opens by path must be its plain files, and the
  // directories it writes into must be directories: a link at either would
  // have it write (or rename outputs and returned files) into wherever it points.
  const kinds = [
    ...FIXED_NAMES.map((name) => ({ name, dir: false })),
    ...FIXED_DIRS.map((name) => ({ name, dir: true })),
  ];
  for (const { name, dir: wantDir } of kinds) {
    if (!names.includes(name)) continue;
    const info = await Deno.lstat(join(dir, name)).catch((err) => err);
    if (info instanceof Deno.errors.NotFound) return "moved";
    if (info instanceof Error) throw unusable(shown, `read ${name}`, info);
    if (wantDir ? !info.isDirectory : !info.isFile) {
      throw new ResultsDirError(
        "not-ours",
        `Results directory ${shown}: its ${name} is not ` +
          (wantDir ? "a directory (a link, or a file)" : "a plain file (a link, or a directory)") +
          "; refusing to touch it",
      );
    }
  }
  if (names.includes(MARKER_FILE)) {
    const marker = await readMarker(join(dir, MARKER_FILE));
    if (marker === "gone") return "moved";
    if (marker === "newer") {
      throw new ResultsDirError(
        "not-ours",
        `Results directory ${shown} was made by a newer vico; refusing to touch it`,
      );
    }
    if (marker === "ok") return "marked";
  }
  // Nothing but a marker being written by another claimant (or a lock file): empty.
  if (others.length === 0) return "empty";
  if (others.every((n) => LEGACY_ENTRIES.has(n))) {
    const journalPath = join(dir, "journal.jsonl");
    const journal = await Deno.stat(journalPath).catch((err) => err);
    if (journal instanceof Deno.errors.NotFound && names.includes("journal.jsonl") && !(await exists(journalPath))) {
      return "moved";
    }
    if (!(journal instanceof Error) && journal.isFile) return "legacy";
  }
  throw new ResultsDirError(
    "not-ours",
    `Results directory ${shown} is not a vico results directory (it has no ${MARKER_FILE} and is not empty); ` +
      "refusing to touch it: name a new or empty directory with --results",
  );
}

async function readMarker(path: string): Promise<"ok" | "newer" | "bad" | "gone"> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (err) {
    // Gone (moved aside with its directory), unless it is a dangling link.
    return err instanceof Deno.errors.NotFound && !(await exists(path)) ? "gone" : "bad";
  }
  try {
    const marker = JSON.parse(text);
    if (marker?.vico !== "results" || typeof marker.format !== "number") return "bad";
    return marker.format > RESULTS_FORMAT ? "newer" : "ok";
  } catch {
    return "bad";
  }
}

async function writeMarker(dir: string, durable: boolean): Promise<void> {
  const marker = { vico: "results", format: RESULTS_FORMAT, created: new Date().toISOString() };
  await writeFileAtomic(join(dir, MARKER_FILE), JSON.stringify(marker) + "\n");
  if (durable) await syncDir(dir);
}

async function syncDir(path: string): Promise<void> {
  const dir = await Deno.open(path, { read: true });
  try {
    await dir.sync();
  } finally {
    dir.close();
  }
}

/** Whether `path` names anything, a dangling link included. */
async function exists(path: string): Promise<boolean> {
  return await Deno.lstat(path).then(() => true, () => false);
}

/** Whether the open `file` is the one now at `path` (same device and inode; a link there is not). */
async function sameFile(file: Deno.FsFile, path: string): Promise<boolean> {
  const [held, there] = await Promise.all([file.stat(), Deno.lstat(path).catch(() => undefined)]);
  if (there === undefined) return false;
  if (held.ino === null || there.ino === null) return true; // no inodes on this platform: trust the path
  return held.dev === there.dev && held.ino === there.ino;
}
