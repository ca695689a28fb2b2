/**
 * A session's watch on its peer's signs of life: when it last heard from
 * the peer, the periodic check of that silence, and the one way a session
 * drops a peer for it (close the connection, remember why). Which states are
 * watched, and what counts as too long besides pulses, is the session's to
 * say in its check.
 *
 * @module
 */

import { VicoError } from "../../core/errors.ts";
import { MANAGER_SILENT_PULSES } from "../../protocol/vico_extension.ts";
import { awakeInterval } from "../../util/awake_interval.ts";
import { type SessionClock, SYSTEM_CLOCK } from "./session_clock.ts";

/**
 * A joined peer that shows no sign of life for more than this many pulse
 * intervals (`--pulse`, agreed in the vico hello) in a watched state is taken
 * for lost, and its jobs go back to the queue. In the middle of a transfer,
 * when a peer cannot pulse or answer Status, the transfer timeout
 * (`--transfer-timeout`, see `watch_transfer.ts`) applies instead.
 */
export const SILENT_PULSES = MANAGER_SILENT_PULSES;

/** The longest a text session waits between two looks at its runner's silence (pulses or idle timeout). */
export const LIVENESS_CHECK_MAX_MS = 5000;
/** The shortest a text session waits between two looks (however short the pulse). */
export const LIVENESS_CHECK_MIN_MS = 50;

/** What a drop closes: the session's connection. */
export interface Closable {
  /** Ends the connection (pending and later reads see the end of stream). */
  close(): void;
}

/** The last sign of life of one peer, and why the session dropped it (if it did). */
export class Liveness {
  /** The clock this watch reads (the transfer watchdog ticks on it too). */
  readonly clock: SessionClock;
  readonly #connection: Closable;
  #lastHeard: number;
  #dropReason: string | undefined;
  #stop: (() => void) | undefined;
  /** A transfer is on the wire: the transfer watchdog rules, not the pulses. */
  transferring = false;

  /**
   * @param connection What a drop closes.
   * @param clock Time and ticks. @default {SYSTEM_CLOCK}
   */
  constructor(connection: Closable, clock: SessionClock = SYSTEM_CLOCK) {
    this.#connection = connection;
    this.clock = clock;
    this.#lastHeard = clock.now();
  }

  /** The peer showed a sign of life (a line, a frame, bytes of a transfer moving). */
  heard(): void {
    this.#lastHeard = this.clock.now();
  }

  /** Milliseconds since the last sign of life. */
  get silentMs(): number {
    return this.clock.now() - this.#lastHeard;
  }

  /** Why the peer was dropped; `undefined` while it was not. */
  get dropReason(): string | undefined {
    return this.#dropReason;
  }

  /**
   * Ends the connection for a liveness reason; the session then reports the
   * peer as lost, with the first reason given.
   */
  drop(reason: string): void {
    this.#dropReason ??= reason;
    this.#connection.close();
  }

  /**
   * Drops the peer if it has been silent for more than
   * {@linkcode SILENT_PULSES} pulses of `pulseMs` (never when `pulseMs` is 0).
   *
   * @param who How the reason names the peer (`"Runner"`, `"Node"`).
   * @param missing What it did not send (`"no pulse"`, `"no Status reply"`).
   * @returns Whether it was dropped.
   */
  dropIfSilent(pulseMs: number, who: string, missing: string): boolean {
    const silent = this.silentMs;
    if (pulseMs <= 0 || silent <= SILENT_PULSES * pulseMs) return false;
    this.drop(`${who} silent for ${Math.round(silent / 1000)}s (${missing})`);
    return true;
  }

  /**
   * The error a read that met the end of the stream fails with: the drop's
   * reason when the session dropped the peer, else `closed`.
   */
  closedError(closed: string): VicoError {
    return new VicoError("CONNECTION_CLOSED", this.#dropReason ?? closed);
  }

  /** Runs `check` every `everyMs` until {@linkcode stop} (one watch at a time); see {@linkcode awakeEvery}. */
  watch(everyMs: number, check: () => void): void {
    this.stop();
    this.#stop = this.awakeEvery(everyMs, check);
  }

  /**
   * Calls `tick` every `everyMs` until the returned function is called,
   * except that a tick that comes late (more than two periods and a second
   * since the last: this process was not running, stopped by SIGSTOP or a
   * suspended VM) first counts as a sign of life and is skipped. What the
   * peer sent meanwhile waits unread in the socket, and its silence was
   * this side's: it gets a whole window again before it is judged.
   */
  awakeEvery(everyMs: number, tick: () => void): () => void {
    return awakeInterval(everyMs, tick, () => this.heard(), this.clock);
  }

  /** Ends the watch (the session closed). */
  stop(): void {
    this.#stop?.();
    this.#stop = undefined;
  }
}
