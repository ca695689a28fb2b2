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

/** Options for {@linkcode OutputSpool}. */
export interface OutputSpoolOptions {
  /** Directory for the temporary file. */
  dir: string;
  /** Bytes kept in memory before spilling to disk. @default {262144} */
  memoryLimit?: number;
  /** Largest output accepted; beyond it the spool throws an `OutputLimitError`. @default {Infinity} */
  maxBytes?: number;
}

let spoolCounter = 0;

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

  /** @param options Where to spill and when. */
  constructor(options: OutputSpoolOptions) {
    this.#dir = options.dir;
    this.#memoryLimit = options.memoryLimit ?? 256 * 1024;
    this.#maxBytes = options.maxBytes ?? Infinity;
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
    this.#path = join(this.#dir, `out-${Deno.pid}-${++spoolCounter}`);
    this.#reserved = true;
    return this.#path;
  }

  /** Takes the reserved file, of `size` bytes, as the whole output; it is opened when it is sent. */
  adopt(size: number): void {
    if (!this.#reserved || this.#file !== undefined) throw new Error("No file reserved");
    this.#size = size;
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
      this.#path = join(this.#dir, `out-${Deno.pid}-${++spoolCounter}`);
      this.#file = await Deno.open(this.#path, { read: true, write: true, createNew: true });
      for (const held of this.#chunks) await writeAll(this.#file, held);
      this.#chunks = [];
    }
    await writeAll(this.#file, chunk);
  };

  /** Streams the whole output to `sink`, chunk by chunk. */
  async pipeTo(sink: (chunk: Uint8Array) => Promise<void>, chunkBytes = 1024 * 1024): Promise<void> {
    if (this.#reserved && this.#file === undefined && this.#size > 0) {
      this.#file = await Deno.open(this.#path!, { read: true });
    }
    if (this.#file === undefined) {
      for (const chunk of this.#chunks) await sink(chunk);
      return;
    }
    await this.#file.seek(0, Deno.SeekMode.Start);
    await copyExact(this.#file, this.#size, sink, {
      chunkBytes,
      shortMessage: `Spool file ${this.#path} is shorter than the ${this.#size} bytes written`,
    });
  }

  /** Releases memory and removes the temporary file. */
  async dispose(): Promise<void> {
    this.#chunks = [];
    this.#file?.close();
    this.#file = undefined;
    if (this.#path !== undefined) await Deno.remove(this.#path).catch(() => {});
    this.#path = undefined;
    this.#reserved = false;
  }
}
