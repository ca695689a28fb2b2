/**
 * The transfer watchdog: a File or Result on the wire has no pulses (the
 * peer is busy sending or reading raw bytes), so instead a transfer that
 * moves no byte for the transfer timeout (`--transfer-timeout`) drops the
 * peer. Otherwise a peer that stops sending mid-output would hold its job
 * forever.
 *
 * @module
 */

import { VicoError } from "../../core/errors.ts";
import type { Liveness } from "./liveness.ts";

/** The longest between two looks at a transfer's progress. */
export const TRANSFER_CHECK_MAX_MS = 1000;
/** The shortest between two looks (however short the timeout). */
export const TRANSFER_CHECK_MIN_MS = 10;

/**
 * Runs one transfer under the watchdog: `body` calls `moved` for each chunk
 * that goes through; one that moves nothing for `idleMs` drops the peer
 * (through `liveness`, which is marked as transferring meanwhile).
 *
 * @param stalled The drop's reason, given how long nothing moved.
 * @throws {VicoError} `CONNECTION_CLOSED` with that reason when the transfer stalled; else what `body` threw.
 */
export async function watchTransfer<T>(
  liveness: Liveness,
  idleMs: number,
  stalled: (stalledMs: number) => string,
  body: (moved: () => void) => Promise<T>,
): Promise<T> {
  const moved = () => liveness.heard();
  moved();
  liveness.transferring = true;
  let reason: string | undefined;
  const stop = liveness.awakeEvery(
    Math.max(TRANSFER_CHECK_MIN_MS, Math.min(idleMs / 4, TRANSFER_CHECK_MAX_MS)),
    () => {
      const silent = liveness.silentMs;
      if (silent < idleMs) return;
      reason ??= stalled(silent);
      liveness.drop(reason);
    },
  );
  try {
    return await body(moved);
  } catch (err) {
    if (reason !== undefined) throw new VicoError("CONNECTION_CLOSED", reason);
    throw err;
  } finally {
    stop();
    liveness.transferring = false;
    moved();
  }
}
