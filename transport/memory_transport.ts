/**
 * An in-memory {@linkcode Transport} pair and listener, for driving sessions
 * and the server in a test without sockets. What one end writes the other
 * reads, in order, in the chunks it was written (split when the reader's
 * buffer is smaller); closing either end ends both directions, as a TCP
 * reset would: pending and later reads see the end of stream, later writes
 * reject. A write past the direction's high-water mark waits for the reader
 * to take bytes, as a socket's send buffer would: memory stays bounded
 * however much one end writes.
 *
 * @module
 */

import type { Transport, TransportListener } from "./transport.ts";

/** Bytes one direction holds unread before a write waits: a socket's send buffer, roughly. */
export const MEMORY_HIGH_WATER_BYTES = 1 << 20;

const closedError = () => new Deno.errors.BrokenPipe("The memory transport is closed");

/** One direction of a pair: chunks written, waiting to be read. */
class Pipe {
  readonly #chunks: Uint8Array[] = [];
  readonly #highWater: number;
  #buffered = 0;
  #waiter: (() => void) | undefined;
  /** Writers waiting for the reader (each looks again when woken). */
  readonly #drained: (() => void)[] = [];
  #closed = false;

  constructor(highWater: number) {
    this.#highWater = highWater;
  }

  /** Queues a copy of `chunk`; resolves once at most the high-water mark is unread. */
  async push(chunk: Uint8Array): Promise<void> {
    if (this.#closed) throw closedError();
    if (chunk.length === 0) return;
    this.#chunks.push(chunk.slice());
    this.#buffered += chunk.length;
    this.#wake();
    while (this.#buffered > this.#highWater) {
      if (this.#closed) throw closedError();
      await new Promise<void>((resolve) => this.#drained.push(resolve));
    }
  }

  close(): void {
    this.#closed = true;
    this.#wake();
    this.#drain();
  }

  get closed(): boolean {
    return this.#closed;
  }

  async read(p: Uint8Array): Promise<number | null> {
    while (this.#chunks.length === 0) {
      if (this.#closed) return null;
      await new Promise<void>((resolve) => (this.#waiter = resolve));
    }
    const chunk = this.#chunks[0];
    const n = Math.min(p.length, chunk.length);
    p.set(chunk.subarray(0, n));
    if (n === chunk.length) this.#chunks.shift();
    else this.#chunks[0] = chunk.subarray(n);
    this.#buffered -= n;
    if (this.#buffered <= this.#highWater) this.#drain();
    return n;
  }

  #wake(): void {
    const waiter = this.#waiter;
    this.#waiter = undefined;
    waiter?.();
  }

  #drain(): void {
    for (const wake of this.#drained.splice(0)) wake();
  }
}

/** One end of a {@linkcode memoryTransportPair}. */
export class MemoryTransport implements Transport {
  /** The other end's name, as a socket's peer address would be. */
  readonly peer: string;
  readonly #in: Pipe;
  readonly #out: Pipe;

  /** @internal Made by {@linkcode memoryTransportPair}. */
  constructor(peer: string, input: Pipe, output: Pipe) {
    this.peer = peer;
    this.#in = input;
    this.#out = output;
  }

  /** Reads what the other end wrote; `null` once either end closed and nothing is left. */
  read(p: Uint8Array): Promise<number | null> {
    return this.#in.read(p);
  }

  /**
   * Hands `p` to the other end; waits while the other end has more than the
   * high-water mark unread. Rejects once either end closed.
   */
  write(p: Uint8Array): Promise<void> {
    return this.#out.push(p);
  }

  /** Closes both directions; safe to call more than once. */
  close(): void {
    this.#in.close();
    this.#out.close();
  }

  /** Whether either end has closed. */
  get closed(): boolean {
    return this.#out.closed;
  }
}

/**
 * Two connected in-memory transports.
 *
 * @param options `a` and `b`: each end's name (the other end's `peer`);
 *   `highWaterBytes`: unread bytes per direction before a write waits
 *   ({@linkcode MEMORY_HIGH_WATER_BYTES} unless given).
 *
 * @example
 * ```ts
 * import { memoryTransportPair } from "./memory_transport.ts";
 * const [a, b] = memoryTransportPair();
 * await a.write(new TextEncoder().encode("PETO\n"));
 * const buf = new Uint8Array(16);
 * const n = await b.read(buf);
 * console.assert(new TextDecoder().decode(buf.subarray(0, n!)) === "PETO\n");
 * a.close();
 * console.assert(await b.read(buf) === null);
 * ```
 */
export function memoryTransportPair(
  options: { a?: string; b?: string; highWaterBytes?: number } = {},
): [MemoryTransport, MemoryTransport] {
  const highWater = options.highWaterBytes ?? MEMORY_HIGH_WATER_BYTES;
  const ab = new Pipe(highWater);
  const ba = new Pipe(highWater);
  return [new MemoryTransport(options.b ?? "memory:b", ba, ab), new MemoryTransport(options.a ?? "memory:a", ab, ba)];
}

/**
 * A {@linkcode TransportListener} that yields the server ends of the pairs
 * {@linkcode MemoryListener.connect} makes.
 */
export class MemoryListener implements TransportListener {
  /** A made-up address (nothing is bound). */
  readonly address = { hostname: "memory", port: 0 };
  readonly #peerPrefix: string;
  readonly #pending: MemoryTransport[] = [];
  #waiter: (() => void) | undefined;
  #closed = false;
  #count = 0;

  /** @param options `peerPrefix`: the accepted ends' `peer` is this and a count from 1. @default {"memory:client-"} */
  constructor(options: { peerPrefix?: string } = {}) {
    this.#peerPrefix = options.peerPrefix ?? "memory:client-";
  }

  /** Makes a pair and returns the client's end; the server's end is accepted next. */
  connect(): MemoryTransport {
    if (this.#closed) throw new Deno.errors.ConnectionRefused("The memory listener is closed");
    const n = ++this.#count;
    const [client, server] = memoryTransportPair({ a: `${this.#peerPrefix}${n}`, b: "memory:server" });
    this.#pending.push(server);
    this.#wake();
    return client;
  }

  /** Stops accepting. */
  close(): void {
    this.#closed = true;
    this.#wake();
  }

  /** The server's ends, in the order their clients connected. */
  async *[Symbol.asyncIterator](): AsyncIterator<Transport> {
    while (true) {
      while (this.#pending.length === 0) {
        if (this.#closed) return;
        await new Promise<void>((resolve) => (this.#waiter = resolve));
      }
      yield this.#pending.shift()!;
    }
  }

  #wake(): void {
    const waiter = this.#waiter;
    this.#waiter = undefined;
    waiter?.();
  }
}
