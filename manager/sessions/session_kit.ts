/**
 * The session kit: what every manager session (text or binary) shares, one
 * per connection, and its life from handshake to close, the same for every
 * protocol.
 *
 * - {@linkcode SessionKit.liveness}: the peer's signs of life, the periodic
 *   check, the drop for silence ({@linkcode Liveness}); transfers run under
 *   `watchTransfer` on it.
 * - {@linkcode SessionKit.request}: the ask-then-wait request to the
 *   scheduler ({@linkcode JobRequest}).
 * - {@linkcode SessionKit.join}: the handshake completed: the listener's
 *   window closes, and the scheduler learns of the peer and takes back the
 *   jobs it held.
 * - {@linkcode SessionKit.run}: the states are served until the connection
 *   ends; a failure is reported (see `FailureReporter`), never thrown; and at
 *   the end, whatever happened, the liveness watch stops, a joined peer's
 *   jobs go back to the scheduler and the connection is closed. A peer that
 *   broke the protocol is to blame, not its jobs: they go back without a
 *   loss counted against them.
 *
 * @module
 */

import { ProtocolError } from "../../core/errors.ts";
import type { CarriedJob, RunnerLink, Scheduler } from "../scheduling/scheduler.ts";
import { JobRequest } from "./job_request.ts";
import { type Closable, Liveness } from "./liveness.ts";
import { type SessionClock, SYSTEM_CLOCK } from "./session_clock.ts";
import type { HandshakeWindow } from "./session_context.ts";

/** One session's shared parts; `A` is the scheduler's answer to a request, as the session keeps it. */
export class SessionKit<A> {
  /** The watch on the peer's signs of life. */
  readonly liveness: Liveness;
  /** The pending request for a job (the scheduler's `assign`, `release` and `refuse` answer it). */
  readonly request: JobRequest<A> = new JobRequest<A>();
  readonly #link: RunnerLink;
  readonly #connection: Closable;
  readonly #scheduler: Pick<Scheduler, "onRunnerJoined" | "onRunnerLost">;
  readonly #handshake: HandshakeWindow;
  readonly #held: readonly CarriedJob[];
  #joined = false;

  /**
   * @param link The session as the scheduler knows it.
   * @param connection The connection, closed at the end (and by a liveness drop).
   * @param scheduler Learns of the peer when it joins; takes its jobs back when it goes.
   * @param handshake The window the handshake must complete in.
   * @param held The hand-outs the peer holds from an earlier connection (vico extension).
   * @param clock Time and ticks for the liveness watch. @default {SYSTEM_CLOCK}
   */
  constructor(
    link: RunnerLink,
    connection: Closable,
    scheduler: Pick<Scheduler, "onRunnerJoined" | "onRunnerLost">,
    handshake: HandshakeWindow,
    held: readonly CarriedJob[],
    clock: SessionClock = SYSTEM_CLOCK,
  ) {
    this.#link = link;
    this.#connection = connection;
    this.#scheduler = scheduler;
    this.#handshake = handshake;
    this.#held = held;
    this.liveness = new Liveness(connection, clock);
  }

  /** Whether the handshake completed (the scheduler knows the peer). */
  get joined(): boolean {
    return this.#joined;
  }

  /** The handshake completed: the window closes, and the scheduler learns of the peer and what it holds. */
  join(): void {
    this.#handshake.done();
    this.#joined = true;
    this.#scheduler.onRunnerJoined(this.#link, this.#held);
  }

  /**
   * Serves the connection until it ends. Never rejects.
   *
   * @param serve The states, from the first to the last.
   * @param report Reports a failure (never rejects).
   * @param ended The session is over (it enters Closed); called before the scheduler is told.
   */
  async run(serve: () => Promise<void>, report: (err: unknown) => Promise<void>, ended: () => void): Promise<void> {
    let blameJobs = true;
    try {
      await serve();
    } catch (err) {
      blameJobs = !(err instanceof ProtocolError);
      await report(err);
    } finally {
      this.liveness.stop();
      ended();
      if (this.#joined) this.#scheduler.onRunnerLost(this.#link, blameJobs);
      this.#connection.close();
    }
  }
}
