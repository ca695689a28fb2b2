/**
 * The manager's listener: accepts connections, chooses the protocol from
 * the first byte a peer sends (protocol notes, "One port, two protocols"),
 * and runs one session per connection. A connection that fails never
 * touches another one.
 *
 * @module
 */

import { BufferedReader } from "../protocol/buffered_reader.ts";
import type { Limits } from "../protocol/limits.ts";
import type { Transport, TransportListener } from "../transport/transport.ts";
import { logger } from "../util/log.ts";

/** First byte of a text-protocol hail (`S` of `SALUTON`). */
export const TEXT_FIRST_BYTE = 0x53;
/** First byte of a binary-protocol Join. */
export const BINARY_FIRST_BYTE = 0x03;

/** A running session, as the server tracks it. */
export interface Session {
  /** Serves the connection until it ends; never rejects. */
  run(): Promise<void>;
  /** Ends the connection now. */
  close(): void;
}

/** Makes a session for a connection, given the protocol its first byte chose. */
export interface SessionFactory {
  /** A text-protocol runner. */
  text(transport: Transport, reader: BufferedReader): Session;
  /** A binary-protocol node, if this manager serves them. */
  binary?(transport: Transport, reader: BufferedReader): Session;
}

/** Options for {@linkcode Server}. */
export interface ServerOptions {
  /** Wire limits (the reader's line limit comes from here). */
  limits: Limits;
  /** How long a new connection may stay silent before its first byte. */
  firstByteTimeoutMs: number;
}

const log = logger("manager");

/** Serves sessions on a listener. */
export class Server {
  readonly #listener: TransportListener;
  readonly #factory: SessionFactory;
  readonly #options: ServerOptions;
  readonly #live = new Map<Session, Promise<void>>();
  readonly #pending = new Set<Transport>();
  #closed = false;

  /**
   * @param listener Where connections come from.
   * @param factory Makes the session for each protocol.
   * @param options Limits and timeouts.
   */
  constructor(listener: TransportListener, factory: SessionFactory, options: ServerOptions) {
    this.#listener = listener;
    this.#factory = factory;
    this.#options = options;
  }

  /** Number of connections being served. */
  get connections(): number {
    return this.#live.size + this.#pending.size;
  }

  /** Accepts connections until {@linkcode close}. */
  async serve(): Promise<void> {
    for await (const transport of this.#listener) {
      if (this.#closed) {
        transport.close();
        break;
      }
      this.#start(transport);
    }
  }

  async #start(transport: Transport): Promise<void> {
    this.#pending.add(transport);
    const reader = new BufferedReader(transport, { maxLineBytes: this.#options.limits.maxLineBytes });
    const timer = setTimeout(() => transport.close(), this.#options.firstByteTimeoutMs);
    let first: number | null = null;
    try {
      first = await reader.peekU8();
    } catch {
      first = null;
    } finally {
      clearTimeout(timer);
      this.#pending.delete(transport);
    }
    let session: Session | undefined;
    if (first === TEXT_FIRST_BYTE) {
      session = this.#factory.text(transport, reader);
    } else if (first === BINARY_FIRST_BYTE && this.#factory.binary) {
      session = this.#factory.binary(transport, reader);
    } else {
      if (first !== null) {
        log.warn("Refusing connection from {peer}: first byte 0x{byte} starts no known protocol", {
          peer: transport.peer,
          byte: first.toString(16).padStart(2, "0"),
        });
      }
      transport.close();
      return;
    }
    if (this.#closed) {
      transport.close();
      return;
    }
    const done = session.run().finally(() => this.#live.delete(session));
    this.#live.set(session, done);
  }

  /** Stops accepting new connections. Live sessions go on. */
  close(): void {
    this.#closed = true;
    this.#listener.close();
    for (const t of this.#pending) t.close();
  }

  /**
   * Waits up to `timeoutMs` for live sessions to end on their own, then
   * closes the rest.
   */
  async drain(timeoutMs: number): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const all = Promise.all(this.#live.values());
    await Promise.race([all, new Promise((r) => (timer = setTimeout(r, timeoutMs)))]);
    clearTimeout(timer);
    for (const session of this.#live.keys()) session.close();
    await Promise.all(this.#live.values());
  }
}
