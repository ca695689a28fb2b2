/**
 * A scripted binary-protocol peer over real loopback TCP: send and read
 * frames by hand, to drive a real node (runner) or owner (manager).
 *
 * @module
 */

import { BufferedReader } from "../../protocol/buffered_reader.ts";
import { encodeFromNode, encodeToNode, readFromNode, readToNode } from "../../protocol/binary_codec.ts";
import { DEFAULT_LIMITS } from "../../core/limits.ts";
import type { FromNode, ToNode } from "../../protocol/messages.ts";

const enc = new TextEncoder();

/** One end of a connection speaking frames. */
export class FramePeer implements Disposable {
  readonly conn: Deno.TcpConn;
  readonly reader: BufferedReader;

  constructor(conn: Deno.TcpConn) {
    this.conn = conn;
    this.reader = new BufferedReader(conn);
  }

  /** Connects to `127.0.0.1:port`. */
  static async connect(port: number): Promise<FramePeer> {
    return new FramePeer(await Deno.connect({ hostname: "127.0.0.1", port }));
  }

  /** Sends raw bytes. */
  async send(bytes: Uint8Array | string): Promise<void> {
    const b = typeof bytes === "string" ? enc.encode(bytes) : bytes;
    let off = 0;
    while (off < b.length) off += await this.conn.write(b.subarray(off));
  }

  /** Owner side: sends a frame (and a File's payload). */
  async toNode(msg: ToNode, payload?: Uint8Array | string): Promise<void> {
    await this.send(encodeToNode(msg));
    if (payload !== undefined) await this.send(payload);
  }

  /** Owner side: sends a File with its contents. */
  file(name: string, contents: Uint8Array | string): Promise<void> {
    const bytes = typeof contents === "string" ? enc.encode(contents) : contents;
    return this.toNode({ kind: "file", name, size: bytes.length }, bytes);
  }

  /** Node side: sends a frame (and a Result's payload). */
  async fromNode(msg: FromNode, payload?: Uint8Array | string): Promise<void> {
    await this.send(encodeFromNode(msg));
    if (payload !== undefined) await this.send(payload);
  }

  /** Owner side: reads the node's next frame (null at end of stream). */
  async nodeFrame(startReply = false, timeoutMs = 10_000): Promise<FromNode | null> {
    return await withTimeout(readFromNode(this.reader, DEFAULT_LIMITS, startReply), timeoutMs);
  }

  /** Node side: reads the owner's next frame (null at end of stream). */
  async ownerFrame(timeoutMs = 10_000): Promise<ToNode | null> {
    return await withTimeout(readToNode(this.reader, DEFAULT_LIMITS), timeoutMs);
  }

  /** Reads a Result's payload as text. */
  async text(size: number): Promise<string> {
    return new TextDecoder().decode(await this.reader.readExact(size));
  }

  [Symbol.dispose](): void {
    try {
      this.conn.close();
    } catch {
      // Already closed.
    }
  }
}

/** A scripted owner: listens on a free loopback port. */
export class FrameServer implements Disposable {
  readonly listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });

  get port(): number {
    return this.listener.addr.port;
  }

  async accept(): Promise<FramePeer> {
    return new FramePeer(await this.listener.accept());
  }

  [Symbol.dispose](): void {
    try {
      this.listener.close();
    } catch {
      // Already closed.
    }
  }
}

async function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`no frame within ${ms} ms`)), ms))),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
