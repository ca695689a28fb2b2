/**
 * The manager's listener: accepts connections, chooses the protocol from
 * the first byte a peer sends (protocol notes, "One port, two protocols"),
 * and runs one session per connection. A connection that fails never
 * touches another one.
 *
 * Security sits here, before any session: the TLS handshake (when the
 * listener is TLS), and, when the manager has a secret, the vico
 * extension's mutual authentication. A peer that does not authenticate is
 * refused before it can see a job: a plain text runner with `ERARO`, a plain
 * binary node with Reject, a vico runner with `VICO/1 no`.
 *
 * What a connection costs before its handshake completes is bounded twice
 * over: at most `maxHandshaking` connections are mid-handshake (while that
 * many are, no new one is accepted: the kernel's listen backlog holds them,
 * and only handshakes that have stalled are closed to make room, so a herd
 * of honest runners is served in turn and a slowloris is not), and every
 * byte read from them is charged to one shared budget
 * ({@linkcode HANDSHAKE_BUDGET_BYTES}).
 *
 * @module
 */

import { BufferedReader, type ByteSource } from "../../protocol/buffered_reader.ts";
import { ProtocolError } from "../../core/errors.ts";
import { HANDSHAKE_BUDGET_BYTES, HANDSHAKE_STALL_MS, type Limits } from "../../core/limits.ts";
import { newNonce, type SharedSecret } from "../../protocol/auth.ts";
import { encodeToNode, readFromNode } from "../../protocol/binary_codec.ts";
import { encodeLine, formatManagerLine } from "../../protocol/text_codec.ts";
import {
  type ClientHello,
  EXTENSION_FIRST_BYTE,
  formatServerHello,
  parseClientHello,
  parseClientProof,
  type ServerHello,
} from "../../protocol/vico_extension.ts";
import type { Transport, TransportListener } from "../../transport/transport.ts";
import { logger, RateLimitedLog } from "../../util/log.ts";
import { settlesWithin } from "../../util/timeout.ts";
import { HandshakeBudget } from "./handshake_budget.ts";
import type { Extension, HandshakeWindow, Session } from "./session_context.ts";
import type { CarriedJob } from "../scheduling/scheduler.ts";

/** First byte of a text-protocol hail (`S` of `SALUTON`). */
export const TEXT_FIRST_BYTE = 0x53;
/** First byte of a binary-protocol Join. */
export const BINARY_FIRST_BYTE = 0x03;
/** First byte of a TLS handshake record. */
const TLS_FIRST_BYTE = 0x16;

/** Why a peer that did not authenticate is refused. */
export const AUTHENTICATION_REQUIRED =
  "authentication required: this manager has a secret; start the runner with --join TOKEN or --secret-file FILE";

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
  /**
   * Most connections that have not completed a handshake. While this many
   * are, no new one is accepted (the listen backlog queues them) and those
   * that have stalled are closed to make room.
   */
  maxHandshaking: number;
  /** Bytes that all handshakes together may make the manager read. @default {HANDSHAKE_BUDGET_BYTES} */
  handshakeBudgetBytes?: number;
  /** A handshake the manager waits on this long without a byte has stalled. @default {HANDSHAKE_STALL_MS} */
  handshakeStallMs?: number;
  /** Most connections at once; more are closed at accept. @default {Infinity} */
  maxConnections?: number;
  /** The shared secret every peer must prove it knows (vico extension); none: no authentication. */
  secret?: SharedSecret;
  /** The listener speaks TLS (only used to word refusals). */
  tls?: boolean;
  /**
   * What the manager answers a vico peer's hello, and which of its held
   * lines it takes back. @default {() => ({ answer: { kind: "ok" }, held: [] })}
   */
  extensionAnswer?: (
    hello: ClientHello,
    holds: readonly string[],
  ) => { answer: Extract<ServerHello, { kind: "ok" }>; held: readonly CarriedJob[] };
}

const log = logger("manager");
const refusals = new RateLimitedLog(log, "refused connection(s)");

/** Logs a refused connection, at a bounded rate. */
function logRefusal(peer: string, reason: string): void {
  refusals.log("warn", "Refusing connection from {peer}: {reason}", { peer, reason });
}
const capped = new RateLimitedLog(log, "connection(s) over --max-connections", 1);
const overBudget = new RateLimitedLog(log, "connection(s) over the handshake budget");

/** How often, while the handshake cap is reached, stalled handshakes are looked for. */
const SWEEP_MS = 1000;

/** A connection within its handshake window. */
interface Handshaking {
  /** `performance.now()` since when the manager waits for the peer's next bytes; `undefined` while it does not. */
  waitingSince: number | undefined;
  /** Ends the window (the handshake completed, or the connection is closed). */
  done(): void;
}

/** A connection refused for a reason the peer is not told in the extension's words (TLS, a closed peer). */
class Refusal extends Error {}

/** Serves sessions on a listener. */
export class Server {
  readonly #listener: TransportListener;
  readonly #factory: SessionFactory;
  readonly #options: ServerOptions;
  readonly #live = new Map<Session, { transport: Transport; ended: Promise<void> }>();
  readonly #pending = new Set<Transport>();
  /** Connections within their handshake window, oldest first. */
  readonly #handshaking = new Map<Transport, Handshaking>();
  readonly #budget: HandshakeBudget<Transport>;
  /** Wakes the accept loop held back at the handshake cap. */
  #slotFree: (() => void) | undefined;
  #sweeper: ReturnType<typeof setInterval> | undefined;
  #lastSweep = 0;
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
    this.#budget = new HandshakeBudget(options.handshakeBudgetBytes ?? HANDSHAKE_BUDGET_BYTES);
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
      // At the cap, accept nothing more until a handshake completes or a
      // stalled one is closed: the kernel's listen backlog holds new
      // connections meanwhile (Deno listens with a backlog of 128; past it
      // the kernel drops SYNs and peers retry them), so a herd of runners is
      // served in turn instead of evicting one another.
      while (this.#handshaking.size >= this.#options.maxHandshaking && !this.#closed) {
        await new Promise<void>((resolve) => (this.#slotFree = resolve));
      }
    }
  }

  /** Accepts again (a handshake slot is free, or the server closes). */
  #wake(): void {
    const wake = this.#slotFree;
    this.#slotFree = undefined;
    wake?.();
  }

  /**
   * While the handshake cap is reached, closes handshakes that have stalled
   * (the manager has waited {@linkcode ServerOptions.handshakeStallMs} for
   * their next byte), oldest first, to make room. One that keeps sending is
   * left its whole window.
   */
  #sweep(): void {
    const now = performance.now();
    const late = now - this.#lastSweep > 2 * SWEEP_MS;
    this.#lastSweep = now;
    if (this.#closed || this.#handshaking.size < this.#options.maxHandshaking) {
      clearInterval(this.#sweeper);
      this.#sweeper = undefined;
      return;
    }
    // After the event loop was busy, reads that completed meanwhile may not
    // have been seen yet: look again next time rather than close them.
    if (late) return;
    const stallMs = this.#options.handshakeStallMs ?? HANDSHAKE_STALL_MS;
    let closed = 0;
    for (const [transport, h] of this.#handshaking) {
      if (h.waitingSince === undefined || now - h.waitingSince < stallMs) continue;
      h.done();
      transport.close();
      closed++;
    }
    if (closed > 0 && this.#evicted === 0) {
      log.warn("{max} connections are mid-handshake; closing the oldest ones that sent nothing for {s}s", {
        max: this.#options.maxHandshaking,
        s: stallMs / 1000,
      });
    }
    this.#evicted += closed;
  }

  /**
   * Reads for a connection's reader: while its handshake is on, marks that
   * the manager waits for the peer (for {@linkcode #sweep}) and charges what
   * arrives to the shared budget; afterwards, a plain read.
   *
   * @throws {ProtocolError} When this connection is the one closed for the budget.
   */
  async #read(transport: Transport, p: Uint8Array): Promise<number | null> {
    const h = this.#handshaking.get(transport);
    if (h === undefined) return transport.read(p);
    h.waitingSince = performance.now();
    let n: number | null;
    try {
      n = await transport.read(p);
    } finally {
      h.waitingSince = undefined;
    }
    if (n !== null && this.#handshaking.has(transport)) this.#charge(transport, n);
    return n;
  }

  /** Charges `n` bytes read from `transport` to the budget; closes what goes over. */
  #charge(transport: Transport, n: number): void {
    let self: number | undefined;
    for (const over of this.#budget.charge(transport, n)) {
      if (over.key === transport) {
        self = over.bytes;
        continue;
      }
      overBudget.log("warn", "Closing connection from {peer}: {reason}", {
        peer: over.key.peer,
        reason: this.#overBudgetReason(over.bytes),
      });
      this.#handshaking.get(over.key)?.done();
      over.key.close();
    }
    if (self !== undefined) throw new ProtocolError(this.#overBudgetReason(self));
  }

  #overBudgetReason(bytes: number): string {
    return `its handshake sent ${bytes} bytes, the most of all connections mid-handshake, ` +
      `and together they went over the handshake budget of ${this.#budget.limit} bytes`;
  }

  async #start(transport: Transport): Promise<void> {
    if (this.connections >= (this.#options.maxConnections ?? Infinity)) {
      capped.log("warn", "Refusing connection from {peer}: {max} connections already (--max-connections)", {
        peer: transport.peer,
        max: this.#options.maxConnections,
      });
      transport.close();
      return;
    }
    const timer = setTimeout(() => transport.close(), this.#options.handshakeTimeoutMs);
    const done = () => {
      if (!this.#handshaking.delete(transport)) return;
      this.#budget.release(transport);
      clearTimeout(timer);
      this.#wake();
      if (this.#handshaking.size === 0 && this.#evicted > 0) {
        log.info("Handshake flood over: {n} connection(s) were closed unfinished", { n: this.#evicted });
        this.#evicted = 0;
      }
    };
    // Until its first byte, the manager waits for the peer (or for TLS).
    this.#handshaking.set(transport, { waitingSince: performance.now(), done });
    if (this.#handshaking.size >= this.#options.maxHandshaking && this.#sweeper === undefined) {
      this.#lastSweep = performance.now();
      this.#sweeper = setInterval(() => this.#sweep(), SWEEP_MS);
    }
    const handshake: HandshakeWindow = { deadline: Date.now() + this.#options.handshakeTimeoutMs, done };
    this.#pending.add(transport);
    const source: ByteSource = { read: (p) => this.#read(transport, p) };
    // Start small: a connection that never sends a line costs 4 KiB, not 64.
    const reader = new BufferedReader(source, {
      bufferSize: 4096,
      maxLineBytes: this.#options.limits.maxLineBytes,
    });
    let first: number | null = null;
    let extension: Extension | undefined;
    try {
      if (transport.handshake !== undefined) {
        await transport.handshake().catch((err) => {
          throw new Refusal(
            `TLS handshake failed: ${(err as Error).message} (a runner without --tls-ca, --tls or --join?)`,
          );
        });
      }
      first = await reader.peekU8();
      if (first === TLS_FIRST_BYTE && !this.#options.tls) {
        throw new Refusal(
          "it began a TLS handshake, but this manager is not set up for TLS (--tls-cert and --tls-key, or enrollment)",
        );
      }
      if (first === EXTENSION_FIRST_BYTE) {
        extension = await this.#negotiate(transport, reader);
        first = await reader.peekU8();
        const expected = extension.hello.proto === "text" ? TEXT_FIRST_BYTE : BINARY_FIRST_BYTE;
        if (first !== expected && first !== null) {
          throw new ProtocolError(`The hello said proto=${extension.hello.proto}, then another protocol began`);
        }
      }
      if (this.#options.secret !== undefined && !extension?.authenticated && first !== null) {
        await this.#refuseUnauthenticated(transport, reader, first);
        throw new Refusal(
          `it did not authenticate (${first === TEXT_FIRST_BYTE ? "text" : "binary"} without the vico extension)`,
        );
      }
    } catch (err) {
      if (err instanceof ProtocolError || err instanceof Refusal) logRefusal(transport.peer, err.message);
      if (err instanceof ProtocolError) {
        await settlesWithin(
          transport.write(encodeLine(formatServerHello({ kind: "no", reason: err.message }))),
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
      if (first !== null) {
        logRefusal(transport.peer, `first byte 0x${first.toString(16).padStart(2, "0")} starts no known protocol`);
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

  /**
   * Reads a vico peer's hello, authenticates it when the manager has a
   * secret (docs/protocol.md, "Authentication"), reads its held-job lines,
   * and answers.
   */
  async #negotiate(transport: Transport, reader: BufferedReader): Promise<Extension> {
    const line = await reader.readLine();
    if (line === null) throw new ProtocolError("Connection closed during the extension's hello");
    const hello = parseClientHello(line);
    const secret = this.#options.secret;
    if (secret !== undefined) {
      if (hello.nonce === undefined) throw new ProtocolError(AUTHENTICATION_REQUIRED);
      const nonce = newNonce();
      const proof = await secret.prove("manager", line, nonce);
      await transport.write(encodeLine(formatServerHello({ kind: "auth", nonce, proof })));
      const reply = await reader.readLine();
      if (reply === null) {
        throw new Refusal(
          "it closed during authentication (its secret differs from this manager's, or it pins another certificate)",
        );
      }
      if (!(await secret.verify("runner", line, nonce, parseClientProof(reply)))) {
        throw new ProtocolError(
          "authentication failed: the runner's proof is wrong (its secret differs from this manager's)",
        );
      }
    } else if (hello.nonce !== undefined) {
      throw new ProtocolError(
        "this manager has no secret and cannot authenticate; start it with --secret-file, or on a non-loopback address to enroll",
      );
    }
    const holds: string[] = [];
    for (let i = 0; i < hello.holds; i++) {
      const held = await reader.readLine();
      if (held === null) throw new ProtocolError("Connection closed while announcing held jobs");
      holds.push(held);
    }
    const { answer, held } = this.#options.extensionAnswer?.(hello, holds) ??
      { answer: { kind: "ok" as const }, held: [] };
    await transport.write(encodeLine(formatServerHello(answer)));
    // The held lines themselves are not kept: only what they resolved to.
    return { hello, held, answer, authenticated: secret !== undefined };
  }

  /**
   * Tells a plain peer (no vico extension) that it must authenticate, in its
   * own protocol: reads its hail or Join (so the reply is not lost to a
   * reset), then answers `ERARO` or Reject.
   */
  async #refuseUnauthenticated(transport: Transport, reader: BufferedReader, first: number): Promise<void> {
    const reason = AUTHENTICATION_REQUIRED;
    await settlesWithin(
      (async () => {
        if (first === TEXT_FIRST_BYTE) {
          await reader.readLine();
          await transport.write(encodeLine(formatManagerLine({ kind: "eraro", reason })));
        } else if (first === BINARY_FIRST_BYTE) {
          await readFromNode(reader, this.#options.limits);
          await transport.write(encodeToNode({ kind: "reject", reason }));
        }
      })().catch(() => {}),
      2000,
    );
  }

  /** Stops accepting new connections. Live sessions go on. */
  close(): void {
    this.#closed = true;
    clearInterval(this.#sweeper);
    this.#sweeper = undefined;
    this.#listener.close();
    for (const t of this.#pending) t.close();
    this.#wake();
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
