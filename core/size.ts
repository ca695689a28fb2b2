/**
 * Byte sizes as users write them: `1000`, `64K`, `200M`, `16G` (powers of 1024).
 *
 * @module
 */

const UNITS: Record<string, number> = { "": 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3, T: 1024 ** 4 };

/**
 * Parses a byte size.
 *
 * @example
 * ```ts
 * import { parseSize } from "./size.ts";
 * console.assert(parseSize("64K") === 65536 && parseSize("1000") === 1000);
 * ```
 * @throws {RangeError} If the text is not a size.
 */
export function parseSize(text: string): number {
  const m = /^([0-9]+(?:\.[0-9]+)?)\s*([KMGT]?)(?:i?B)?$/i.exec(text.trim());
  if (m === null) throw new RangeError(`Expected a size like 1000, 64K, 200M or 16G, got ${JSON.stringify(text)}`);
  return Math.floor(Number(m[1]) * UNITS[m[2].toUpperCase()]);
}
