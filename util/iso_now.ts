/**
 * The time now as ISO-8601 UTC (`2026-01-02T03:04:05.678Z`), for records
 * written per job: formatting a date costs more than reading the clock, and
 * a busy manager stamps several jobs in the same millisecond, so the last
 * string is kept and reused while the millisecond lasts.
 *
 * @module
 */

let lastMs = Number.NaN;
let lastIso = "";

/**
 * `new Date().toISOString()`, reused within one millisecond.
 *
 * @example
 * ```ts
 * import { isoNow } from "./iso_now.ts";
 * console.assert(isoNow().endsWith("Z"));
 * ```
 */
export function isoNow(): string {
  const ms = Date.now();
  if (ms !== lastMs) {
    lastMs = ms;
    lastIso = new Date(ms).toISOString();
  }
  return lastIso;
}
