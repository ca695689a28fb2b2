/**
 * Writes a whole buffer to something with a partial `write`.
 *
 * @module
 */

/** Anything with `write` like `Deno.FsFile` or `Deno.Conn`. */
export interface PartialWriter {
  /** Writes some of `p`, returning how many bytes were written. */
  write(p: Uint8Array): Promise<number>;
}

/** Writes all of `bytes` to `writer`, looping over partial writes. */
export async function writeAll(writer: PartialWriter, bytes: Uint8Array): Promise<void> {
  let off = 0;
  while (off < bytes.length) off += await writer.write(off === 0 ? bytes : bytes.subarray(off));
}
