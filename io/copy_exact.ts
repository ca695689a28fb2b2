/**
 * The one way vico sends exactly N bytes of a file on: an output spool or
 * a kept result to the manager, a staged file to a node, a returned file to
 * the owner. The file must hold at least N bytes from where it is; a file
 * that turns out shorter (it shrank while being sent) is an error, never a
 * short copy.
 *
 * @module
 */

/** Options for {@linkcode copyExact}. */
export interface CopyExactOptions {
  /** Largest chunk handed to the sink. @default {1 MiB} */
  chunkBytes?: number;
  /** The message of the error thrown when the file ends before `size` bytes. */
  shortMessage: string;
}

/**
 * Reads exactly `size` bytes from `file` (from its current position) and
 * hands them to `sink` in order, one chunk at a time; the next read waits
 * for the sink. The chunk is reused: a sink that keeps it must copy it.
 *
 * @example
 * ```ts ignore
 * import { copyExact } from "./copy_exact.ts";
 * using file = await Deno.open("out.bin");
 * await copyExact(file, 1024, (chunk) => transport.write(chunk), { shortMessage: "out.bin shrank" });
 * ```
 * @throws {Error} `shortMessage` when the file ends first.
 */
export async function copyExact(
  file: { read(p: Uint8Array): Promise<number | null> },
  size: number,
  sink: (chunk: Uint8Array) => Promise<void>,
  options: CopyExactOptions,
): Promise<void> {
  const buf = new Uint8Array(Math.min(options.chunkBytes ?? 1 << 20, Math.max(size, 1)));
  let left = size;
  while (left > 0) {
    const n = await file.read(buf.subarray(0, Math.min(left, buf.length)));
    if (n === null) throw new Error(options.shortMessage);
    left -= n;
    await sink(buf.subarray(0, n));
  }
}
