/**
 * A scripted text-protocol peer over real loopback TCP, for driving the
 * manager or runner by hand: send exact bytes, read exact lines.
 *
 * @module
 */

import { BufferedReader } from "../../protocol/buffered_reader.ts";

const enc = new TextEncoder();

/** One end of a TCP connection with line helpers. */
export class LinePeer implements Disposable {
  readonly conn: Deno.TcpConn;
  readonly reader: BufferedReader;

  constructor(conn: Deno.TcpConn) {
    this.conn = conn;
    this.reader = new BufferedReader(conn, { maxLineBytes: 1 << 20 });
  }

  /** Connects to `127.0.0.1:port`. */
  static async connect(port: number): Promise<LinePeer> {
    return new LinePeer(await Deno.connect({ hostname: "127.0.0.1", port }));
  }

  /** Sends raw text or bytes. */
  async send(data: string | Uint8Array): Promise<void> {
    const bytes = typeof data === "string" ? enc.encode(data) : data;
    let off = 0;
    while (off < bytes.length) off += await this.conn.write(bytes.subarray(off));
  }

  /** Sends a line with its `\n`. */
  line(text: string): Promise<void> {
    return this.send(text + "\n");
  }

  /** Reads a line, or `null` at end of stream; rejects after `timeoutMs`. */
  async read(timeoutMs = 10_000): Promise<string | null> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      return await Promise.race([
        this.reader.readLine(),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error("Timed out waiting for a line")), timeoutMs);
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Reads lines until end of stream (or a read error), returning them. */
  async rest(timeoutMs = 10_000): Promise<string[]> {
    const lines: string[] = [];
    try {
      while (true) {
        const l = await this.read(timeoutMs);
        if (l === null) break;
        lines.push(l);
      }
    } catch {
      // Reset by peer counts as the end.
    }
    return lines;
  }

  /** Performs the runner's handshake; returns the VERSIO line. */
  async hail(name = "test-peer"): Promise<string | null> {
    await this.line(`SALUTON; MI ${name}`);
    const versio = await this.read();
    await this.line("KOMPRENAS");
    return versio;
  }

  [Symbol.dispose](): void {
    try {
      this.conn.close();
    } catch {
      // Already closed.
    }
  }
}

/** A one-connection scripted server on a free loopback port. */
export class LineServer implements Disposable {
  readonly listener: Deno.TcpListener;

  constructor() {
    this.listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  }

  /** The bound port. */
  get port(): number {
    return this.listener.addr.port;
  }

  /** Accepts the next connection. */
  async accept(): Promise<LinePeer> {
    return new LinePeer(await this.listener.accept());
  }

  [Symbol.dispose](): void {
    try {
      this.listener.close();
    } catch {
      // Already closed.
    }
  }
}
