/**
 * A node's per-task directory, and the only way the node touches files for
 * the binary protocol. Every name is a task path (see `task_path.ts`); a
 * name whose resolution would leave the directory, pass through a symbolic
 * link, or land on something that is not a regular file is refused with a
 * reason, and nothing outside the directory is written or read.
 *
 * @module
 */

import { join } from "node:path";
import { whyBadTaskPath } from "../protocol/task_path.ts";

/** A name the task directory refuses, with the reason to send back. */
export class TaskPathError extends Error {
  /** @param reason Why the name is refused. */
  constructor(reason: string) {
    super(reason);
    this.name = "TaskPathError";
  }
}

/** A fresh directory for one task. */
export class TaskDir {
  /** Real (symlink-free) path of the directory. */
  readonly path: string;

  private constructor(path: string) {
    this.path = path;
  }

  /** A task directory that already exists (a held task, after a restart). */
  static existing(path: string): TaskDir {
    return new TaskDir(path);
  }

  /** Creates a new, uniquely named directory under `workDir`. */
  static async create(workDir: string): Promise<TaskDir> {
    await Deno.mkdir(workDir, { recursive: true });
    const dir = await Deno.makeTempDir({ dir: workDir, prefix: "task-" });
    return new TaskDir(await Deno.realPath(dir));
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
      } else if (info.isSymlink) {
        throw new TaskPathError(`${JSON.stringify(dir.slice(this.path.length + 1))} is a symbolic link`);
      } else if (!info.isDirectory) {
        throw new TaskPathError(`${JSON.stringify(dir.slice(this.path.length + 1))} is not a directory`);
      }
    }
    const info = await lstat(target);
    if (info?.isSymlink) throw new TaskPathError(`${JSON.stringify(name)} is a symbolic link`);
    if (info?.isDirectory) throw new TaskPathError(`${JSON.stringify(name)} is a directory`);
    return await Deno.open(target, {
      write: true,
      create: true,
      append: options.append ?? false,
      truncate: !options.append,
    });
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
    if (!info.isFile) {
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

  /** Makes staged file `name` executable. */
  async makeExecutable(name: string): Promise<void> {
    await Deno.chmod(this.resolve(name), 0o755);
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
