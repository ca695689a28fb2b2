/**
 * Durations as users write them: `90`, `1.5s`, `250ms`, `10m`, `2h`.
 *
 * @module
 */

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/**
 * Parses a duration into milliseconds; a bare number is seconds.
 *
 * @example
 * ```ts
 * import { parseDuration } from "./duration.ts";
 * console.assert(parseDuration("1.5s") === 1500 && parseDuration("2m") === 120000);
 * ```
 * @throws {RangeError} If the text is not a positive duration.
 */
export function parseDuration(text: string | number): number {
  if (typeof text === "number") {
    if (!(text > 0) || !Number.isFinite(text)) throw new RangeError(`Duration must be positive, got ${text}`);
    return text * 1000;
  }
  const m = /^([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)?$/.exec(text.trim());
  if (m === null || Number(m[1]) <= 0) {
    throw new RangeError(`Expected a duration like 30s, 250ms, 10m or 2h, got ${JSON.stringify(text)}`);
  }
  return Number(m[1]) * UNITS[m[2] ?? "s"];
}
