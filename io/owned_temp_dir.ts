/**
 * A temporary spool directory of this process's that the next vico removes
 * if this process dies without removing it (a SIGKILL, the OOM killer).
 *
 * Proof of ownership, not guesswork: the directory holds
 * {@linkcode OWNER_FILE}, naming its host and process, on which its process
 * keeps an exclusive `flock` for its whole life (the kernel drops it when
 * the process ends, however it ends, whatever pid namespace it ran in). A
 * directory is removed only if all of these hold:
 *
 * - its name starts with one of {@linkcode SWEPT_PREFIXES}, directly in the
 *   same parent as the new one;
 * - it is a directory, not a symbolic link, owned by this user, mode 0700
 *   (in a shared `/tmp` no one else can make such an entry, nor rename or
 *   replace it: the sticky bit);
 * - its {@linkcode OWNER_FILE} is a plain file naming this host (a `TMPDIR`
 *   shared between hosts, where a lock may be local to each, is never
 *   swept across them), and its lock can be taken: no process holds it, so
 *   the one that made it has ended;
 * - it holds files only, as a spool directory does: the files are unlinked
 *   one by one (never followed) and the directory removed; one that holds a
 *   directory (a mount point, or anything vico did not put there) is left.
 *
 * The owner file is created under another name, locked, written, and only
 * then renamed to {@linkcode OWNER_FILE} (the lock stays with the file), so
 * a sweep never sees an unlocked owner file of a directory being made.
 * Anything else (a directory of an older vico without an owner file, one
 * being made, someone else's) is left alone.
 *
 * @module
 */

import { basename, dirname, join } from "node:path";
import { logger } from "../util/log.ts";
import { holderLine } from "./lock_holder.ts";

function writeAllSync(file: Deno.FsFile, bytes: Uint8Array): void {
  for (let done = 0; done < bytes.length;) done += file.writeSync(bytes.subarray(done));
}

/** The file whose lock proves a temporary directory's process is alive. */
export const OWNER_FILE = ".vico-owner";
/** The names of the temporary directories vico makes, and may sweep. */
export const SWEPT_PREFIXES = ["vico-local-", "vico-runner-", "vico-run-"] as const;

const log = logger("temp");
/** Parents already swept by this process. */
const swept = new Set<string>();

/** Options for {@linkcode OwnedTempDir.make}. */
export interface OwnedTempDirOptions {
  /** The parent directory. @default {the system's (`TMPDIR`, else /tmp)} */
  dir?: string;
}

/**
 * The directory to make temporary directories in when `TMPDIR` would not
 * do as Deno reads it: an empty `TMPDIR` means unset (as for `mktemp` and
 * glibc), so `/tmp`. `undefined` otherwise (Deno's own choice: `TMPDIR`,
 * else `/tmp`).
 */
export function tempDirOverride(): string | undefined {
  try {
    return Deno.env.get("TMPDIR") === "" ? "/tmp" : undefined;
  } catch {
    return undefined; // no env permission: Deno's own choice
  }
}

/**
 * Why no directory could be made in `dir` (or in the system's temporary
 * directory, `TMPDIR`), in one line a user can act on.
 */
export function cannotMake(dir: string | undefined, err: unknown): string {
  let where = dir;
  try {
    where ??= Deno.env.get("TMPDIR");
  } catch {
    // No env permission: the default is named.
  }
  where ??= "/tmp";
  const named = dir === undefined ? `${where} (TMPDIR)` : where;
  if (err instanceof Deno.errors.NotCapable) {
    // Deno grants paths under /dev, /proc and /sys to --allow-all only, whatever else is allowed.
    return `cannot make a temporary directory in ${named}: Deno's permissions refuse it; ` +
      `use a directory outside /dev, /proc and /sys${dir === undefined ? " as TMPDIR" : ""}`;
  }
  return `cannot make a temporary directory in ${named}: ${(err as Error).message}`;
}

/**
 * A temporary directory held by this process until {@linkcode remove} (or
 * the process's end); made after sweeping the parent of the ones whose
 * process has ended.
 *
 * @example
 * ```ts ignore
 * const spool = OwnedTempDir.make("vico-runner-");
 * try {
 *   // … files under spool.path …
 * } finally {
 *   spool.remove();
 * }
 * ```
 */
export class OwnedTempDir {
  /** The directory. */
  readonly path: string;
  readonly #lock: Deno.FsFile;
  #removed = false;

  private constructor(path: string, lock: Deno.FsFile) {
    this.path = path;
    this.#lock = lock;
  }

  /**
   * Makes a directory named `prefix…` (one of {@linkcode SWEPT_PREFIXES})
   * and takes its lock; the first time in this process for a parent, first
   * removes that parent's directories left by ended processes.
   *
   * @throws {Error} When the directory cannot be made or locked.
   */
  static make(prefix: (typeof SWEPT_PREFIXES)[number], options: OwnedTempDirOptions = {}): OwnedTempDir {
    let path: string;
    const dir = options.dir ?? tempDirOverride();
    try {
      path = Deno.makeTempDirSync({ prefix, ...(dir === undefined ? {} : { dir }) });
    } catch (err) {
      throw new Error(cannotMake(options.dir, err), { cause: err });
    }
    let lock: Deno.FsFile | undefined;
    try {
      const pending = join(path, `${OWNER_FILE}.new`);
      lock = Deno.openSync(pending, { read: true, write: true, createNew: true, mode: 0o600 });
      lock.lockSync(true);
      writeAllSync(lock, holderLine());
      Deno.renameSync(pending, join(path, OWNER_FILE));
    } catch (err) {
      lock?.close();
      Deno.removeSync(path, { recursive: true });
      throw err;
    }
    const parent = dirname(path);
    if (!swept.has(parent)) {
      swept.add(parent);
      sweepEnded(parent, basename(path));
    }
    return new OwnedTempDir(path, lock);
  }

  /** Removes the directory and lets go of its lock. */
  remove(): void {
    if (this.#removed) return;
    this.#removed = true;
    try {
      Deno.removeSync(this.path, { recursive: true });
    } catch {
      // Gone already; a sweep leaves it alone while the lock is held.
    } finally {
      this.#lock.close();
    }
  }
}

/**
 * Removes the directories in `parent` that {@linkcode OwnedTempDir} made for
 * processes that have ended (see the module's rules); returns their paths.
 * Never throws: what cannot be checked or removed is left.
 *
 * @param parent The directory to sweep.
 * @param except A name not to look at (the caller's own).
 */
export function sweepEnded(parent: string, except?: string): string[] {
  const removed: string[] = [];
  let names: string[];
  try {
    names = [...Deno.readDirSync(parent)].filter((e) =>
      e.isDirectory && e.name !== except && SWEPT_PREFIXES.some((p) => e.name.startsWith(p))
    ).map((e) => e.name);
  } catch {
    return removed;
  }
  const uid = Deno.uid();
  const host = Deno.hostname();
  for (const name of names) {
    const dir = join(parent, name);
    try {
      const info = Deno.lstatSync(dir);
      if (!info.isDirectory || info.uid !== uid || ((info.mode ?? 0) & 0o777) !== 0o700) continue;
      const ownerPath = join(dir, OWNER_FILE);
      if (!Deno.lstatSync(ownerPath).isFile) continue;
      const lock = Deno.openSync(ownerPath, { read: true });
      try {
        if (!lock.tryLockSync(true)) continue; // its process is alive
        if (JSON.parse(Deno.readTextFileSync(ownerPath))?.host !== host) continue;
        const entries = [...Deno.readDirSync(dir)];
        if (entries.some((e) => e.isDirectory)) {
          log.info("Left {dir}, a temporary directory of an ended vico process: it holds a directory", { dir });
          continue;
        }
        // Files and links are unlinked, never followed; the owner file last.
        for (const e of entries) if (e.name !== OWNER_FILE) Deno.removeSync(join(dir, e.name));
        Deno.removeSync(ownerPath);
        Deno.removeSync(dir);
      } finally {
        lock.close();
      }
      removed.push(dir);
      log.info("Removed {dir}: a temporary directory of a vico process that ended without removing it", { dir });
    } catch {
      // Not provably an ended vico's, changed meanwhile, or not removable: left as it is.
    }
  }
  return removed;
}
