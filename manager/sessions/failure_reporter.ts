/**
 * How a session that ended in failure is reported. Any of these may come by
 * the thousand (a flood, a fleet that churns), so each kind is logged at a
 * bounded rate, and only a peer lost holding jobs is a warning: one that
 * leaves holding nothing lost nothing.
 *
 * - The peer broke the protocol (or turned its task down): "dropping", a
 *   warning; the peer is told why, best effort, within
 *   {@linkcode TELL_PEER_MS}.
 * - The connection ended (`CONNECTION_CLOSED`, or a liveness drop, whatever
 *   failed after it): "lost".
 * - Anything else is the manager's own failure: an error, never limited.
 *
 * Before the handshake completed, the first two count as failed handshakes.
 *
 * @module
 */

import { VicoError } from "../../core/errors.ts";
import { logger, RateLimitedLog } from "../../util/log.ts";
import { settlesWithin } from "../../util/timeout.ts";

/** How long a session waits to tell a dropped peer why (it may be gone, or not reading). */
export const TELL_PEER_MS = 1000;

/** Lines let through per window for peers lost holding jobs (other kinds: `RateLimitedLog`'s default). */
const LOSSES_PER_WINDOW = 20;

/** What one kind of session calls things in its log lines. */
export interface FailureWords {
  /** What the rate-limited counts were about, per kind. */
  readonly counts: {
    readonly handshakes: string;
    readonly drops: string;
    readonly losses: string;
    readonly departures: string;
  };
  /** The line for a peer that broke the protocol (`{reason}` is the error's message). */
  readonly dropping: string;
  /** The line for a peer that was lost. */
  readonly lost: string;
  /** The line for any other failure. */
  readonly failed: string;
}

/** One failure, as the session sees it when it ends. */
export interface Failure {
  /** What ended the session. */
  readonly err: unknown;
  /** Whether the handshake had completed. */
  readonly joined: boolean;
  /** Whether the peer held jobs when it went. */
  readonly holding: boolean;
  /** Why the session dropped the peer for its silence, if it did: then the peer was lost, whatever failed next. */
  readonly dropReason: string | undefined;
  /** Whether `err` is the peer's fault (a protocol error, a refusal): it is then dropped and told. */
  readonly peerFault: boolean;
  /** The line's properties besides `reason`. */
  readonly props: Readonly<Record<string, unknown>>;
  /** Tells the peer why it is dropped, in its own protocol. */
  tell(reason: string): Promise<void>;
}

const log = logger("manager");

/** Reports failed sessions of one kind (one reporter per kind, shared by its sessions: the rates are per kind). */
export class FailureReporter {
  readonly #words: FailureWords;
  readonly #handshakes: RateLimitedLog;
  readonly #drops: RateLimitedLog;
  readonly #losses: RateLimitedLog;
  readonly #departures: RateLimitedLog;

  /** @param words What this kind of session calls things. */
  constructor(words: FailureWords) {
    this.#words = words;
    this.#handshakes = new RateLimitedLog(log, words.counts.handshakes);
    this.#drops = new RateLimitedLog(log, words.counts.drops);
    this.#losses = new RateLimitedLog(log, words.counts.losses, LOSSES_PER_WINDOW);
    this.#departures = new RateLimitedLog(log, words.counts.departures);
  }

  /** Logs `failure` at its kind's rate, and tells a peer at fault why it is dropped. */
  async report(failure: Failure): Promise<void> {
    const { joined, holding } = failure;
    const err = failure.dropReason !== undefined ? new VicoError("CONNECTION_CLOSED", failure.dropReason) : failure.err;
    const reason = err instanceof Error ? err.message : String(err);
    const props = { ...failure.props, reason };
    if (failure.dropReason === undefined && failure.peerFault) {
      (joined ? this.#drops : this.#handshakes).log("warn", this.#words.dropping, props);
      await settlesWithin(failure.tell(reason), TELL_PEER_MS);
    } else if (err instanceof VicoError && err.code === "CONNECTION_CLOSED") {
      const limited = !joined ? this.#handshakes : holding ? this.#losses : this.#departures;
      limited.log(holding ? "warn" : "info", this.#words.lost, props);
    } else {
      log.error(this.#words.failed, props);
    }
  }
}
