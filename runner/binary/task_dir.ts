/**
 * A node's per-task directory, and the only way the node touches files for
 * the binary protocol. Every name is a task path (see `task_path.ts`); a
 * name whose resolution would leave the directory, pass through a symbolic
 * link, or land on something that is not a regular file is refused with a
 * reason, and nothing outside the directory is written or read.
 *
 * New files are created exclusively (`O_EXCL` never follows a link); an
 * existing file is opened without truncation and checked to be the very
 * file at that name before a byte is written. With an owner (`--user`), the
 * directory and everything the node writes into it belong to that user, and
 * only files that user owns are read back: a job racing the node can make
 * it return nothing it could not have read itself.
 *
 * @module
 */

import { join } from "node:path";
import { quoteName, whyBadTaskPath } from "../../protocol/task_path.ts";

/** A name the task directory refuses, with the reason to send back. */
export class TaskPathError extends Error {
  /** @param reason Why the name is refused. */
  constructor(reason: string) {
    super(reason);
    this.name = "TaskPathError";
  }
}

/** The user a task's files belong to. */
export interface TaskOwner {
  /** User id. */
  readonly uid: number;
  /** Group id. */
  readonly gid: number;
}

/** A fresh directory for one task. */
export class TaskDir {
  /** Real (symlink-free) path of the directory. */
  readonly path: string;
  readonly #owner: TaskOwner | undefined;

  private constructor(path: string, owner?: TaskOwner) {
    this.path = path;
    this.#owner = owner;
  }

  /** A task directory that already exists (a held task, after a restart). */
  static existing(path: string, owner?: TaskOwner): TaskDir {
    return new TaskDir(path, owner);
  }

  /** Creates a new, uniquely named directory under `workDir`, owned by `owner` if given. */
  static async create(workDir: string, owner?: TaskOwner): Promise<TaskDir> {
    await Deno.mkdir(workDir, { recursive: true });
    const dir = await Deno.realPath(await Deno.makeTempDir({ dir: workDir, prefix: "task-" }));
    if (owner !== undefined) {
      // The job's user may pass through the work dir to its own task
      // directory, but not list it or touch another task's.
      const info = await Deno.stat(workDir);
      if (info.mode !== null && (info.mode & 0o001) === 0) await Deno.chmod(workDir, (info.mode & 0o777) | 0o001);
      await Deno.chown(dir, owner.uid, owner.gid);
    }
    return new TaskDir(dir, owner);
  }

  /** The absolute path of task path `name`. @throws {TaskPathError} */
  resolve(name: string): string {
    const why = whyBadTaskPath(name);
    if (why !== undefined) throw new TaskPathError(why);
    return join(this.path, name);
  }

  /**
   * Opens `name` for writing, creating the directories on its way. Refuses a
   * path through or onto a symbolic link, or onto a directory.
   *
   * @throws {TaskPathError}
   */
  async openForWriting(name: string, options: { append?: boolean } = {}): Promise<Deno.FsFile> {
    const target = this.resolve(name);
    let dir = this.path;
    const segments = name.split("/");
    for (const segment of segments.slice(0, -1)) {
      dir = join(dir, segment);
      const info = await lstat(dir);
      if (info === undefined) {
        await Deno.mkdir(dir);
        if (this.#owner !== undefined) await Deno.chown(dir, this.#owner.uid, this.#owner.gid);
      } else if (info.isSymlink) {
        throw new TaskPathError(`${JSON.stringify(dir.slice(this.path.length + 1))} is a symbolic link`);
      } else if (!info.isDirectory) {
        throw new TaskPathError(`${JSON.stringify(dir.slice(this.path.length + 1))} is not a directory`);
      }
    }
    const info = await lstat(target);
    if (info?.isSymlink) throw new TaskPathError(`${quoteName(name)} is a symbolic link`);
    if (info?.isDirectory) throw new TaskPathError(`${quoteName(name)} is a directory`);
    if (info === undefined) {
      // O_CREAT|O_EXCL: fails on anything at that name, a link included.
      let file: Deno.FsFile;
      try {
        file = await Deno.open(target, { write: true, createNew: true, mode: 0o644 });
      } catch (err) {
        if (err instanceof Deno.errors.AlreadyExists) {
          throw new TaskPathError(`${quoteName(name)} appeared meanwhile`);
        }
        throw err;
      }
      if (this.#owner !== undefined) await Deno.chown(target, this.#owner.uid, this.#owner.gid);
      return file;
    }
    // An existing file: open it untouched, make sure it is the file at that
    // name (not a link swapped in since), and only then truncate.
    const file = await Deno.open(target, { write: true, append: options.append ?? false });
    try {
      const opened = await file.stat();
      const now = await lstat(target);
      const same = now !== undefined && now.isFile && opened.isFile && now.ino === opened.ino && now.dev === opened.dev;
      if (!same) throw new TaskPathError(`${quoteName(name)} changed while it was opened`);
      if ((opened.nlink ?? 1) > 1) throw new TaskPathError(`${quoteName(name)} has other hard links`);
      if (this.#owner !== undefined && opened.uid !== this.#owner.uid) {
        throw new TaskPathError(`${quoteName(name)} belongs to another user`);
      }
      if (!options.append) await file.truncate(0);
      return file;
    } catch (err) {
      file.close();
      throw err;
    }
  }

  /**
   * Opens `name` for reading if it is a regular file inside the directory
   * (following links only while they stay inside).
   *
   * @returns The open file and its size, or `undefined` (missing, outside, not a file).
   */
  async openForReading(name: string): Promise<{ file: Deno.FsFile; size: number } | undefined> {
    let real: string;
    try {
      real = await Deno.realPath(this.resolve(name));
    } catch {
      return undefined;
    }
    if (!real.startsWith(this.path + "/")) return undefined;
    let file: Deno.FsFile;
    try {
      file = await Deno.open(real, { read: true });
    } catch {
      return undefined;
    }
    const info = await file.stat();
    if (!info.isFile || (this.#owner !== undefined && info.uid !== this.#owner.uid)) {
      file.close();
      return undefined;
    }
    return { file, size: info.size };
  }

  /** Whether the first two bytes of staged file `name` are `#!`. */
  async hasShebang(name: string): Promise<boolean> {
    const opened = await this.openForReading(name);
    if (opened === undefined) return false;
    try {
      const head = new Uint8Array(2);
      const n = await opened.file.read(head);
      return n === 2 && head[0] === 0x23 && head[1] === 0x21;
    } finally {
      opened.file.close();
    }
  }

  /** Makes staged file `name` executable (a regular file, not through a link). */
  async makeExecutable(name: string): Promise<void> {
    const path = this.resolve(name);
    const info = await lstat(path);
    if (info === undefined || !info.isFile) throw new TaskPathError(`${quoteName(name)} is not a staged file`);
    await Deno.chmod(path, 0o755);
  }

  /** Removes the directory and everything in it. */
  async remove(): Promise<void> {
    await Deno.remove(this.path, { recursive: true }).catch(() => {});
  }
}

async function lstat(path: string): Promise<Deno.FileInfo | undefined> {
  try {
    return await Deno.lstat(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return undefined;
    throw err;
  }
}
