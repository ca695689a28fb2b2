/**
 * A job's output, held until it can be sent: in memory up to a small
 * threshold, then in a temporary file, so that `REZULTO` can announce the
 * size before the bytes follow, and memory stays bounded whatever the job
 * writes. Or a file the job's process wrote itself
 * ({@linkcode OutputSpool.reserveFile}, {@linkcode OutputSpool.adopt}).
 *
 * @module
 */

import { join } from "node:path";
import { writeAll } from "../../io/write_all.ts";
import { copyExact } from "../../io/copy_exact.ts";
import { OutputLimitError } from "./output_limit.ts";
import { PosixSpawn } from "./posix_spawn.ts";

/** Options for {@linkcode OutputSpool}. */
export interface OutputSpoolOptions {
  /** Directory for the temporary file. */
  dir: string;
  /** Bytes kept in memory before spilling to disk. @default {262144} */
  memoryLimit?: number;
  /** Largest output accepted; beyond it the spool throws an `OutputLimitError`. @default {Infinity} */
  maxBytes?: number;
  /**
   * Where a reserved file comes from and goes back to once disposed of (see
   * {@linkcode SpoolFiles}), instead of a file created and removed per job.
   * Its directory is used, not {@linkcode dir}.
   */
  files?: SpoolFiles;
}

/**
 * The file system of a job's spool file had no room left when the job
 * ended: the job, which writes that file itself, may have met `ENOSPC` and
 * lost the rest of its output without the runner seeing a failed write.
 * The job fails (status 125) with this note rather than being recorded
 * with a cut output.
 */
export class SpoolFullError extends Error {
  /** @param dir The spool's directory. */
  constructor(dir: string) {
    super(
      `the file system of the output spool (${dir}) was full when the job ended: its output may be cut short ` +
        `(free space there, or point TMPDIR elsewhere)`,
    );
    this.name = "SpoolFullError";
  }
}

/** Largest output whose file {@linkcode SpoolFiles} takes back: bigger ones are removed. */
const REUSED_FILE_BYTES = 64 * 1024;

/**
 * Spool files kept for the next jobs: a job's output file is created once
 * and truncated by each job that reuses it, not created and removed per job
 * (an inode allocated and freed per job costs the runner more CPU than the
 * rest of a trivial job's handling on some file systems). A file goes back
 * only when it is small and nothing but the runner ever has it open: a
 * process that left its job's group and still holds the job's output (see
 * `PosixSpawn.unheld`) keeps its file, which is removed as before.
 * {@linkcode clear} removes what is kept.
 */
export class SpoolFiles {
  /** The directory the files are in. */
  readonly dir: string;
  readonly #free: string[] = [];
  readonly #max: number;

  /**
   * Files kept in `dir`, at most `max` at once.
   *
   * @param dir Directory for the files.
   * @param max Most files kept at once.
   */
  constructor(dir: string, max = 32) {
    this.dir = dir;
    this.#max = max;
  }

  /** A free file's path, or a fresh path in the directory. */
  take(): string {
    return this.#free.pop() ?? freshPath(this.dir);
  }

  /**
   * Takes back a disposed of file of `size` bytes, or removes it; false
   * when it is not taken and the caller must remove it (too big, no room
   * kept, no way to check it). A file taken back goes under a fresh name
   * first, so a process of the job that kept its path (not the file) and
   * opens it later finds nothing there, never the next job's output; then
   * one that some other process still has open is removed, not kept.
   */
  give(path: string, size: number): boolean {
    if (size > REUSED_FILE_BYTES || this.#free.length >= this.#max) return false;
    const spawn = PosixSpawn.open();
    // Only where it can be told that no process of the job still has the file open.
    if (spawn === undefined) return false;
    const fresh = freshPath(this.dir);
    try {
      Deno.renameSync(path, fresh);
    } catch {
      return false;
    }
    if (!spawn.unheld(fresh)) {
      try {
        Deno.removeSync(fresh);
      } catch {
        // Gone already, or the directory with it: nothing kept either way.
      }
      return true; // removed here: nothing left at `path` for the caller
    }
    this.#free.push(fresh);
    return true;
  }

  /** Removes the files kept. */
  async clear(): Promise<void> {
    for (const path of this.#free.splice(0)) await Deno.remove(path).catch(() => {});
  }
}

let spoolCounter = 0;

/** A name no spool file of this process has had. */
function freshPath(dir: string): string {
  return join(dir, `out-${Deno.pid}-${++spoolCounter}`);
}

/** Output spooled in memory, then on disk. */
export class OutputSpool {
  readonly #dir: string;
  readonly #memoryLimit: number;
  readonly #maxBytes: number;
  #chunks: Uint8Array[] = [];
  #file: Deno.FsFile | undefined;
  #path: string | undefined;
  #size = 0;
  #reserved = false;
  #adopted = false;
  readonly #files: SpoolFiles | undefined;

  /** @param options Where to spill and when. */
  constructor(options: OutputSpoolOptions) {
    this.#dir = options.dir;
    this.#memoryLimit = options.memoryLimit ?? 256 * 1024;
    this.#maxBytes = options.maxBytes ?? Infinity;
    this.#files = options.files;
  }

  /** Bytes written. */
  get size(): number {
    return this.#size;
  }

  /** Whether the output spilled to disk. */
  get onDisk(): boolean {
    return this.#path !== undefined;
  }

  /**
   * A fresh path in the spool's directory for the job to write its output
   * into directly (see `RunProcessOptions.outputFile`); then
   * {@linkcode adopt}. Removed by {@linkcode dispose} whether adopted or not.
   */
  reserveFile(): string {
    if (this.#path !== undefined || this.#size > 0) throw new Error("The spool holds output already");
    this.#path = this.#files?.take() ?? freshPath(this.#dir);
    this.#reserved = true;
    return this.#path;
  }

  /** Takes the reserved file, of `size` bytes, as the whole output; it is opened when it is sent. */
  adopt(size: number): void {
    if (!this.#reserved || this.#file !== undefined) throw new Error("No file reserved");
    this.#size = size;
    this.#adopted = true;
  }

  /** Appends a chunk (copied: the caller may reuse it). */
  write = async (chunk: Uint8Array): Promise<void> => {
    if (this.#reserved) throw new Error("The spool's file is the job's to write");
    if (this.#size + chunk.length > this.#maxBytes) {
      throw new OutputLimitError(this.#maxBytes);
    }
    this.#size += chunk.length;
    if (this.#file === undefined && this.#size <= this.#memoryLimit) {
      this.#chunks.push(chunk.slice());
      return;
    }
    if (this.#file === undefined) {
      this.#path = freshPath(this.#dir);
      this.#file = await Deno.open(this.#path, { read: true, write: true, createNew: true });
      for (const held of this.#chunks) await writeAll(this.#file, held);
      this.#chunks = [];
    }
    await writeAll(this.#file, chunk);
  };

  /** Streams the whole output to `sink`, chunk by chunk. */
  async pipeTo(sink: (chunk: Uint8Array) => Promise<void>, chunkBytes = 1024 * 1024): Promise<void> {
    // A file opened just now is at its start already.
    let atStart = false;
    if (this.#reserved && this.#file === undefined && this.#size > 0) {
      this.#file = await Deno.open(this.#path!, { read: true });
      atStart = true;
    }
    if (this.#file === undefined) {
      for (const chunk of this.#chunks) await sink(chunk);
      return;
    }
    if (!atStart) await this.#file.seek(0, Deno.SeekMode.Start);
    await copyExact(this.#file, this.#size, sink, {
      chunkBytes,
      shortMessage: `Spool file ${this.#path} is shorter than the ${this.#size} bytes written`,
    });
  }

  /** Releases memory and removes the temporary file (or gives a reserved one back to its {@linkcode SpoolFiles}). */
  async dispose(): Promise<void> {
    this.#chunks = [];
    this.#file?.close();
    this.#file = undefined;
    const path = this.#path;
    const kept = path !== undefined && this.#reserved && this.#adopted && this.#files?.give(path, this.#size);
    if (path !== undefined && !kept) await Deno.remove(path).catch(() => {});
    this.#path = undefined;
    this.#reserved = false;
    this.#adopted = false;
  }
}
