/**
 * Joining byte chunks into one buffer.
 *
 * @module
 */

/**
 * The chunks as one buffer, in order; a single chunk is returned as it is
 * (not copied).
 *
 * @example
 * ```ts
 * import { concatBytes } from "./concat_bytes.ts";
 * console.assert(concatBytes([new Uint8Array([1]), new Uint8Array([2, 3])]).length === 3);
 * ```
 */
export function concatBytes(parts: readonly Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0];
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
