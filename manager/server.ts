/**
 * The manager's listener: accepts connections, chooses the protocol from
 * the first byte a peer sends (protocol notes, "One port, two protocols"),
 * and runs one session per connection. A connection that fails never
 * touches another one.
 *
 * @module
 */

import { BufferedReader } from "../protocol/buffered_reader.ts";
import { ProtocolError } from "../protocol/errors.ts";
import type { Limits } from "../protocol/limits.ts";
import { encodeLine } from "../protocol/text_codec.ts";
import {
  type ClientHello,
  EXTENSION_FIRST_BYTE,
  EXTENSION_PREFIX,
  formatServerHello,
  parseClientHello,
  type ServerHello,
} from "../protocol/vico_extension.ts";
import type { Transport, TransportListener } from "../transport/transport.ts";
import { logger, LogRateLimit } from "../util/log.ts";
import { settlesWithin } from "../util/timeout.ts";

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

/**
 * The window a new connection has to complete its handshake. The session
 * calls `done()` once the peer is known; a connection still in its window
 * at `deadline` is closed.
 */
export interface HandshakeWindow {
  /** `Date.now()` by which the handshake must be complete. */
  readonly deadline: number;
  /** The handshake completed (or the session ended). */
  done(): void;
}

/** What a vico peer said in the extension's hello (absent for a plain peer). */
export interface Extension {
  /** The hello. */
  readonly hello: ClientHello;
  /** Command lines of the jobs the runner says it still holds. */
  readonly holds: readonly string[];
  /** What the manager answered. */
  readonly answer: Extract<ServerHello, { kind: "ok" }>;
}

/** Makes a session for a connection, given the protocol its first byte chose. */
export interface SessionFactory {
  /** A text-protocol runner. */
  text(transport: Transport, reader: BufferedReader, handshake: HandshakeWindow, extension?: Extension): Session;
  /** A binary-protocol node, if this manager serves them. */
  binary?(transport: Transport, reader: BufferedReader, handshake: HandshakeWindow, extension?: Extension): Session;
}

/** Options for {@linkcode Server}. */
export interface ServerOptions {
  /** Wire limits (the reader's line limit comes from here). */
  limits: Limits;
  /** How long a new connection has, from accept, to complete its handshake. */
  handshakeTimeoutMs: number;
  /** Most connections that have not completed a handshake; more are closed at once. */
  maxHandshaking: number;
  /** What the manager answers a vico peer's hello (and held jobs). @default {() => ({ kind: "ok" })} */
  extensionAnswer?: (hello: ClientHello, holds: readonly string[]) => Extract<ServerHello, { kind: "ok" }>;
}

const log = logger("manager");
const refusals = new LogRateLimit(5, 10_000);

/** Serves sessions on a listener. */
export class Server {
  readonly #listener: TransportListener;
  readonly #factory: SessionFactory;
  readonly #options: ServerOptions;
  readonly #live = new Map<Session, { transport: Transport; ended: Promise<void> }>();
  readonly #pending = new Set<Transport>();
  /** Connections within their handshake window, oldest first. */
  readonly #handshaking = new Map<Transport, () => void>();
  #evicted = 0;
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
    if (this.#handshaking.size >= this.#options.maxHandshaking) {
      // Too many connections that have not said who they are: a flood or a
      // slowloris. Evict the oldest rather than refuse the newest, so an
      // honest runner (which completes its handshake in a millisecond)
      // still gets in.
      const [oldest, evict] = this.#handshaking.entries().next().value!;
      evict();
      oldest.close();
      if (this.#evicted++ === 0) {
        log.warn("More than {max} connections are mid-handshake; closing the oldest ones", {
          max: this.#options.maxHandshaking,
        });
      }
    }
    const timer = setTimeout(() => transport.close(), this.#options.handshakeTimeoutMs);
    const done = () => {
      if (!this.#handshaking.delete(transport)) return;
      clearTimeout(timer);
      if (this.#handshaking.size === 0 && this.#evicted > 0) {
        log.info("Handshake flood over: {n} connection(s) were closed unfinished", { n: this.#evicted });
        this.#evicted = 0;
      }
    };
    this.#handshaking.set(transport, done);
    const handshake: HandshakeWindow = { deadline: Date.now() + this.#options.handshakeTimeoutMs, done };
    this.#pending.add(transport);
    // Start small: a connection that never sends a line costs 4 KiB, not 64.
    const reader = new BufferedReader(transport, {
      bufferSize: 4096,
      maxLineBytes: this.#options.limits.maxLineBytes,
    });
    let first: number | null = null;
    let extension: Extension | undefined;
    try {
      first = await reader.peekU8();
      if (first === EXTENSION_FIRST_BYTE) {
        extension = await this.#negotiate(transport, reader);
        first = await reader.peekU8();
        const expected = extension.hello.proto === "text" ? TEXT_FIRST_BYTE : BINARY_FIRST_BYTE;
        if (first !== expected && first !== null) {
          throw new ProtocolError(`The hello said proto=${extension.hello.proto}, then another protocol began`);
        }
      }
    } catch (err) {
      const gate = refusals.allow();
      if (gate.log && err instanceof ProtocolError) {
        log.warn("Refusing connection from {peer}: {reason}", { peer: transport.peer, reason: err.message });
        await settlesWithin(
          transport.write(encodeLine(`${EXTENSION_PREFIX}no ${err.message.replace(/[\r\n]+/g, " ")}`)),
          1000,
        );
      }
      first = null;
    } finally {
      this.#pending.delete(transport);
    }
    let session: Session | undefined;
    if (first === TEXT_FIRST_BYTE) {
      session = this.#factory.text(transport, reader, handshake, extension);
    } else if (first === BINARY_FIRST_BYTE && this.#factory.binary) {
      session = this.#factory.binary(transport, reader, handshake, extension);
    } else {
      handshake.done();
      const gate = refusals.allow();
      if (gate.suppressed > 0) log.warn("{n} more refused connection(s) were not logged", { n: gate.suppressed });
      if (first !== null && gate.log) {
        log.warn("Refusing connection from {peer}: first byte 0x{byte} starts no known protocol", {
          peer: transport.peer,
          byte: first.toString(16).padStart(2, "0"),
        });
      }
      transport.close();
      return;
    }
    if (this.#closed) {
      handshake.done();
      transport.close();
      return;
    }
    const ended = session.run().finally(() => {
      handshake.done();
      this.#live.delete(session);
    });
    this.#live.set(session, { transport, ended });
  }

  /** Reads a vico peer's hello (and its held-job lines) and answers it. */
  async #negotiate(transport: Transport, reader: BufferedReader): Promise<Extension> {
    const line = await reader.readLine();
    if (line === null) throw new ProtocolError("Connection closed during the extension's hello");
    const hello = parseClientHello(line);
    const holds: string[] = [];
    for (let i = 0; i < hello.holds; i++) {
      const held = await reader.readLine();
      if (held === null) throw new ProtocolError("Connection closed while announcing held jobs");
      holds.push(held);
    }
    const answer = this.#options.extensionAnswer?.(hello, holds) ?? { kind: "ok" as const };
    await transport.write(encodeLine(formatServerHello(answer)));
    return { hello, holds, answer };
  }

  /** Stops accepting new connections. Live sessions go on. */
  close(): void {
    this.#closed = true;
    this.#listener.close();
    for (const t of this.#pending) t.close();
  }

  /**
   * Waits up to `timeoutMs` for the sessions of peers that completed their
   * handshake to end on their own, still accepting new connections
   * meanwhile (late runners are told there is nothing left). Then stops
   * listening and closes every connection that remains.
   */
  async drain(timeoutMs: number): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    const joined = () => [...this.#live.entries()].filter(([, e]) => !this.#handshaking.has(e.transport)).length;
    while (joined() > 0 && performance.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    this.close();
    for (const session of this.#live.keys()) session.close();
    await Promise.all([...this.#live.values()].map((e) => e.ended));
  }
}
