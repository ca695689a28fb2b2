/**
 * {@linkcode Transport} over a `Deno.Conn` (TCP or TLS).
 *
 * @module
 */

import { writeAll } from "../io/write_all.ts";
import type { Transport, TransportListener } from "./transport.ts";

/** Wraps a connected `Deno.Conn`. */
export class ConnTransport implements Transport {
  readonly #conn: Deno.Conn;
  #closed = false;
  /** The peer's address for logs. */
  readonly peer: string;

  /** @param conn A connected socket. */
  constructor(conn: Deno.Conn) {
    this.#conn = conn;
    const addr = conn.remoteAddr as Deno.NetAddr;
    this.peer = addr.hostname === undefined ? String(addr.transport) : `${addr.hostname}:${addr.port}`;
  }

  /** Reads up to `p.length` bytes; `null` at end of stream or after close. */
  async read(p: Uint8Array): Promise<number | null> {
    if (this.#closed) return null;
    try {
      return await this.#conn.read(p);
    } catch (err) {
      if (this.#closed) return null;
      throw err;
    }
  }

  /** Writes all of `p`. */
  async write(p: Uint8Array): Promise<void> {
    await writeAll(this.#conn, p);
  }

  /** Completes the TLS handshake (a no-op for TCP); rejects if it fails. */
  async handshake(): Promise<void> {
    if ("handshake" in this.#conn) await (this.#conn as Deno.TlsConn).handshake();
  }

  /** Closes the socket; further reads return `null`. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#conn.close();
    } catch {
      // Already closed by the peer side of the runtime.
    }
  }
}

/** Request/reply traffic: never wait to coalesce small segments; notice dead peers. */
export function tune(conn: Deno.TcpConn): Deno.TcpConn {
  conn.setNoDelay(true);
  conn.setKeepAlive(true);
  return conn;
}

/** Connects over TCP. */
export async function connectTcp(hostname: string, port: number): Promise<Transport> {
  return new ConnTransport(tune(await Deno.connect({ hostname, port, transport: "tcp" })));
}

/** Listens on TCP and yields a {@linkcode Transport} per accepted connection. */
export function listenTcp(hostname: string, port: number): TransportListener {
  return transportListener(Deno.listen({ hostname, port, transport: "tcp" }), (conn) => new ConnTransport(tune(conn)));
}

/**
 * Serves a `Deno.Listener` (TCP or TLS) as a {@linkcode TransportListener},
 * wrapping each accepted connection with `wrap`.
 */
export function transportListener<C extends Deno.Conn>(
  listener: Deno.Listener<C>,
  wrap: (conn: C) => Transport,
): TransportListener {
  const addr = listener.addr as Deno.NetAddr;
  return {
    address: { hostname: addr.hostname, port: addr.port },
    close() {
      try {
        listener.close();
      } catch {
        // Already closed.
      }
    },
    async *[Symbol.asyncIterator]() {
      while (true) {
        let conn: C;
        try {
          conn = await listener.accept();
        } catch (err) {
          if (err instanceof Deno.errors.BadResource || err instanceof Deno.errors.Interrupted) return;
          // Transient accept failures (EMFILE, ECONNABORTED): keep serving.
          await new Promise((r) => setTimeout(r, 50));
          continue;
        }
        yield wrap(conn);
      }
    },
  };
}
