/**
 * Job keys: what identifies a job across runs of an edited job list. A key
 * is a hash of what the job runs plus its occurrence number among identical
 * jobs, so reordering or extending a list never confuses two jobs.
 *
 * @module
 */

import { createHash } from "node:crypto";

/**
 * The key of the `occurrence`-th job (1-based) that runs `command`:
 * 16 hex digits of SHA-256, a dash and the occurrence.
 *
 * @example
 * ```ts
 * import { jobKey } from "./job_key.ts";
 * console.assert(jobKey("echo hi", 2).endsWith("-2"));
 * ```
 */
export function jobKey(command: string, occurrence: number): string {
  return `${createHash("sha256").update(command).digest("hex").slice(0, 16)}-${occurrence}`;
}
