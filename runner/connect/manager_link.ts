/**
 * A runner's way to its manager, shared by its connection loops: dialling,
 * the time limit on a connection's opening, the backoff between attempts,
 * the stop that wakes every wait, and whether the runner is connected now.
 *
 * @module
 */

import { VicoError } from "../../core/errors.ts";
import { connectTcp } from "../../transport/conn_transport.ts";
import type { Transport } from "../../transport/transport.ts";
import type { RunnerOptions } from "../runner_options.ts";
import { DEFAULT_BACKOFF } from "./backoff.ts";
import { Reconnect } from "./reconnect.ts";

/**
 * How long a runner waits for a manager to complete a connection's opening
 * before it takes the connection for failed: an endpoint that accepts TCP
 * and never answers does not hold a runner for ever.
 */
export const HANDSHAKE_TIMEOUT_MS = 30_000;

/** A connection's opening under way: cut by its deadline, or by a stop with nothing running. */
export interface Opening {
  /** Why the opening was cut short, once it was. */
  readonly cut?: { readonly stopped: boolean; readonly reason: string };
  /** The opening is over (the timer stops). */
  done(): void;
}

/** A dial that failed: the manager could not be verified (`AUTH_FAILED`), or not reached. */
export interface DialFailure {
  readonly outcome: "AUTH_FAILED" | "unreachable";
  readonly reason: string;
}

/** What a {@linkcode ManagerLink} needs of the runner's options. */
export type LinkOptions = Pick<RunnerOptions, "hostname" | "port" | "connect" | "handshakeTimeoutMs" | "backoff">;

/**
 * Dials, times openings, and backs off for one runner; {@linkcode ManagerLink.stop}
 * wakes every wait for good.
 */
export class ManagerLink {
  readonly #options: LinkOptions;
  readonly #onChange: () => void;
  #stopping = false;
  #wake: () => void = () => {};
  readonly #wakeup: Promise<void>;
  #connected = false;
  #problem: string | undefined;
  /** Openings under way, each with the function that cuts it short. */
  readonly #openings = new Set<(stopped: boolean) => void>();

  /**
   * @param options Where the manager is, how to dial it, how long to wait.
   * @param onChange Called when {@linkcode connected} or {@linkcode problem} changes.
   */
  constructor(options: LinkOptions, onChange: () => void = () => {}) {
    this.#options = options;
    this.#onChange = onChange;
    this.#wakeup = new Promise((resolve) => (this.#wake = resolve));
  }

  /** Joined to the manager (and authenticated, with a secret). */
  get connected(): boolean {
    return this.#connected;
  }

  /** Why the manager cannot be reached, while retrying. */
  get problem(): string | undefined {
    return this.#problem;
  }

  /** The runner is stopping (or aborted). */
  get stopping(): boolean {
    return this.#stopping;
  }

  /** `host:port` of the manager, for messages. */
  get manager(): string {
    return `${this.#options.hostname}:${this.#options.port}`;
  }

  /** Records whether the runner is joined, and why not. */
  connection(connected: boolean, problem?: string): void {
    if (connected === this.#connected && problem === this.#problem) return;
    this.#connected = connected;
    this.#problem = problem;
    this.#onChange();
  }

  /** The runner stops: every wait ends now, and every later one at once. */
  stop(): void {
    this.#stopping = true;
    this.#wake();
  }

  /** Every wait ends now, and every later one at once (the runner is done, or stopping). */
  wake(): void {
    this.#wake();
  }

  /** Cuts every opening under way short, as stopped. */
  cutOpenings(): void {
    for (const cut of [...this.#openings]) cut(true);
  }

  /** Sleeps up to `ms`, or until stop/abort. */
  async sleep(ms: number): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([this.#wakeup, new Promise((r) => (timer = setTimeout(r, ms)))]);
    clearTimeout(timer);
  }

  /** A connection loop's reconnection (`prefix` before its logged reasons). */
  reconnect(options: { prefix?: string; persist: boolean; jobs: () => number }): Reconnect {
    const { initialMs, maxMs } = this.#options.backoff ?? DEFAULT_BACKOFF;
    return new Reconnect({
      initialMs,
      maxMs,
      prefix: options.prefix,
      sleep: (ms) => this.sleep(ms),
      onDown: (why) => this.connection(false, why),
      persist: options.persist,
      stopping: () => this.#stopping,
      jobs: options.jobs,
    });
  }

  /** Dials the manager; a failure comes back as its outcome and reason. */
  async dial(): Promise<{ transport: Transport } | DialFailure> {
    const { hostname, port } = this.#options;
    try {
      return { transport: await (this.#options.connect ?? connectTcp)(hostname, port) };
    } catch (err) {
      const untrusted = err instanceof VicoError && err.code === "AUTH_FAILED";
      const message = (err as Error).message;
      return untrusted
        ? { outcome: "AUTH_FAILED", reason: message }
        : { outcome: "unreachable", reason: `Cannot connect to the manager at ${hostname}:${port}: ${message}` };
    }
  }

  /**
   * Starts the clock on a connection's opening: past the handshake limit,
   * or on a stop with nothing running ({@linkcode cutOpenings}), the
   * transport is closed and `cut` says why.
   */
  opening(transport: Transport): Opening {
    const ms = this.#options.handshakeTimeoutMs ?? HANDSHAKE_TIMEOUT_MS;
    const { hostname, port } = this.#options;
    let cut: Opening["cut"];
    const end = (stopped: boolean) => {
      if (cut !== undefined) return;
      cut = stopped ? { stopped, reason: "Stopped before the manager answered" } : {
        stopped,
        reason: `The manager at ${hostname}:${port} accepted the connection but did not complete the handshake ` +
          `within ${ms / 1000}s`,
      };
      done();
      transport.close();
    };
    const timer = setTimeout(() => end(false), ms);
    const done = () => {
      clearTimeout(timer);
      this.#openings.delete(end);
    };
    this.#openings.add(end);
    return {
      get cut() {
        return cut;
      },
      done,
    };
  }
}
