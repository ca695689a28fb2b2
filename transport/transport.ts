/**
 * The seam between sessions and sockets. Sessions read and write through a
 * {@linkcode Transport}; TCP (and later TLS) implement it below, tests can
 * implement it in memory.
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
}

/** Accepts transports from peers. */
export interface TransportListener extends AsyncIterable<Transport> {
  /** The address actually bound (port 0 is resolved). */
  readonly address: { hostname: string; port: number };
  /** Stops accepting. */
  close(): void;
}
