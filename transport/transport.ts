/**
 * The seam between sessions and sockets. Sessions read and write through a
 * {@linkcode Transport}; TCP and TLS implement it (`conn_transport.ts`,
 * `tls.ts`), and `memory_transport.ts` in memory, for tests without sockets.
 *
 * @module
 */

import type { ByteSource } from "../protocol/buffered_reader.ts";

/** A bidirectional byte stream to one peer. */
export interface Transport extends ByteSource {
  /** Reads up to `p.length` bytes; `null` at end of stream. */
  read(p: Uint8Array): Promise<number | null>;
  /** Writes all of `p`. Rejects if the connection is gone. */
  write(p: Uint8Array): Promise<void>;
  /** Closes both directions. Safe to call more than once. */
  close(): void;
  /** The peer's address for logs, e.g. `127.0.0.1:50422`. */
  readonly peer: string;
  /**
   * Completes a security handshake (TLS) if the transport has one; rejects
   * if it fails. Absent for plain TCP.
   */
  handshake?(): Promise<void>;
}

/** Accepts transports from peers. */
export interface TransportListener extends AsyncIterable<Transport> {
  /** The address actually bound (port 0 is resolved). */
  readonly address: { hostname: string; port: number };
  /** Stops accepting. */
  close(): void;
}

/**
 * One listener over several: yields every connection any of them accepts.
 * Its address is the first one's.
 */
export function mergeListeners(primary: TransportListener, ...others: TransportListener[]): TransportListener {
  const all = [primary, ...others];
  return {
    address: primary.address,
    close() {
      for (const l of all) l.close();
    },
    async *[Symbol.asyncIterator]() {
      const iterators = all.map((l) => l[Symbol.asyncIterator]());
      const pull = (i: number) => iterators[i].next().then((result) => ({ result, i }));
      const pending = new Map(iterators.map((_, i) => [i, pull(i)]));
      while (pending.size > 0) {
        const { result, i } = await Promise.race(pending.values());
        if (result.done) {
          pending.delete(i);
          continue;
        }
        pending.set(i, pull(i));
        yield result.value;
      }
    },
  };
}
