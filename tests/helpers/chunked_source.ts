/**
 * A {@linkcode ByteSource} that hands out bytes in chosen chunkings, to test
 * that decoding does not depend on how reads split the stream.
 *
 * @module
 */

import type { ByteSource } from "../../protocol/buffered_reader.ts";

/** How to split: fixed chunk size, or explicit sizes (the last repeats). */
export type Chunking = number | number[];

/** Serves `bytes` in reads of the given sizes, then end of stream. */
export function chunkedSource(bytes: Uint8Array, chunking: Chunking): ByteSource {
  const sizes = typeof chunking === "number" ? [chunking] : chunking;
  let at = 0;
  let i = 0;
  return {
    read(p: Uint8Array): Promise<number | null> {
      if (at >= bytes.length) return Promise.resolve(null);
      const size = sizes[Math.min(i++, sizes.length - 1)];
      const n = Math.min(size, p.length, bytes.length - at);
      p.set(bytes.subarray(at, at + n));
      at += n;
      return Promise.resolve(n);
    },
  };
}

/** The chunkings every codec test runs through. */
export const CHUNKINGS: [name: string, chunking: Chunking][] = [
  ["one byte at a time", 1],
  ["two bytes at a time", 2],
  ["seven bytes at a time", 7],
  ["odd splits", [3, 1, 4, 1, 5, 9, 2, 6]],
  ["all in one read", 1 << 30],
];

/** Concatenates byte arrays. */
export function concat(...parts: (Uint8Array | string)[]): Uint8Array {
  const enc = new TextEncoder();
  const arrays = parts.map((p) => typeof p === "string" ? enc.encode(p) : p);
  const out = new Uint8Array(arrays.reduce((n, a) => n + a.length, 0));
  let off = 0;
  for (const a of arrays) {
    out.set(a, off);
    off += a.length;
  }
  return out;
}
