/**
 * The one buffered byte reader every session reads through: lines for the
 * text protocol, exact byte counts and big-endian integers for the binary
 * protocol, and bounded streaming of large payloads straight to a sink.
 *
 * It reads from any {@linkcode ByteSource} (a `Deno.Conn` is one), so it
 * does no I/O of its own and can be fed in any chunking by tests.
 *
 * @module
 */

import { ProtocolError, VicoError } from "../core/errors.ts";

/** Anything with a `read` like `Deno.Conn`: fills `p`, returns the count or `null` at end of stream. */
export interface ByteSource {
  /** Reads up to `p.length` bytes into `p`. */
  read(p: Uint8Array): Promise<number | null>;
}

/** Options for {@linkcode BufferedReader}. */
export interface BufferedReaderOptions {
  /** Initial buffer size in bytes. @default {65536} */
  bufferSize?: number;
  /** Longest line accepted by `readLine`, terminator excluded. @default {65536} */
  maxLineBytes?: number;
  /** Chunk size used by `pipeExact` for large payloads. @default {1048576} */
  pipeChunkBytes?: number;
}

/** Receives a chunk that is only valid until the returned promise settles. */
export type ChunkSink = (chunk: Uint8Array) => void | Promise<void>;

const LF = 0x0a;
const COMPACT_BELOW = 4096;
const CR = 0x0d;
/** Lines up to this many bytes that are all ASCII are decoded in JavaScript. */
const ASCII_FAST_MAX = 256;

/**
 * A buffered reader over a {@linkcode ByteSource}.
 *
 * @example Read a line and a big-endian integer
 * ```ts
 * import { BufferedReader } from "./buffered_reader.ts";
 * const bytes = new Uint8Array([...new TextEncoder().encode("PETO\n"), 0, 0, 1, 0]);
 * let done = false;
 * const reader = new BufferedReader({
 *   read(p) {
 *     if (done) return Promise.resolve(null);
 *     p.set(bytes);
 *     done = true;
 *     return Promise.resolve(bytes.length);
 *   },
 * });
 * console.assert((await reader.readLine()) === "PETO");
 * console.assert((await reader.readU32()) === 256);
 * ```
 */
export class BufferedReader {
  readonly #source: ByteSource;
  readonly #maxLine: number;
  readonly #pipeChunk: number;
  #buf: Uint8Array;
  #view: DataView;
  #start = 0;
  #end = 0;
  #eof = false;
  #filling: Promise<boolean> | undefined;
  readonly #decoder = new TextDecoder("utf-8", { fatal: true });

  /**
   * @param source Where bytes come from.
   * @param options Buffer size and limits.
   */
  constructor(source: ByteSource, options: BufferedReaderOptions = {}) {
    this.#source = source;
    this.#maxLine = options.maxLineBytes ?? 64 * 1024;
    this.#pipeChunk = options.pipeChunkBytes ?? 1024 * 1024;
    this.#buf = new Uint8Array(options.bufferSize ?? 64 * 1024);
    this.#view = new DataView(this.#buf.buffer);
  }

  /** Bytes read from the source but not yet consumed. */
  get buffered(): number {
    return this.#end - this.#start;
  }

  /**
   * Reads one line terminated by `\n` (a preceding `\r` is dropped) and
   * decodes it as UTF-8.
   *
   * @returns The line, or `null` when the stream ends cleanly between lines.
   * @throws {ProtocolError} If the line is too long, not UTF-8, or the
   * stream ends in the middle of it.
   */
  async readLine(): Promise<string | null> {
    let scanFrom = this.#start;
    while (true) {
      const hit = this.#buf.subarray(scanFrom, this.#end).indexOf(LF);
      if (hit !== -1) return this.#takeLine(scanFrom + hit);
      // A line may carry one `\r` beyond the limit before its `\n`.
      if (this.#end - this.#start > this.#maxLine + 1) {
        this.#lineTooLong(this.#buf.subarray(this.#start, this.#end));
      }
      const scanned = this.#end - this.#start;
      if (!await this.#fill()) {
        if (this.#start === this.#end) return null;
        throw new ProtocolError(
          "Connection closed in the middle of a line",
          this.#buf.subarray(this.#start, this.#end),
        );
      }
      scanFrom = this.#start + scanned;
    }
  }

  /**
   * The next line if it is in the buffer already (as {@linkcode readLine}
   * would return it, with the same checks), else `undefined` and nothing
   * is consumed: a caller reading many short lines saves a turn of the
   * event loop per line.
   *
   * @throws {ProtocolError} If the line is too long or not UTF-8.
   */
  bufferedLine(): string | undefined {
    const hit = this.#buf.subarray(this.#start, this.#end).indexOf(LF);
    return hit === -1 ? undefined : this.#takeLine(this.#start + hit);
  }

  /** Consumes the line that ends at the `\n` at `nl` and decodes it. */
  #takeLine(nl: number): string {
    let lineEnd = nl;
    if (lineEnd > this.#start && this.#buf[lineEnd - 1] === CR) lineEnd--;
    const bytes = this.#buf.subarray(this.#start, lineEnd);
    if (bytes.length > this.#maxLine) this.#lineTooLong(bytes);
    this.#start = nl + 1;
    if (this.#start === this.#end) this.#start = this.#end = 0;
    return this.#decode(bytes);
  }

  /**
   * Reads exactly `n` bytes into a new array. Check `n` against a limit
   * before calling: this allocates `n` bytes.
   *
   * @throws {VicoError} `CONNECTION_CLOSED` if the stream ends first.
   */
  async readExact(n: number): Promise<Uint8Array> {
    const out = new Uint8Array(n);
    let got = Math.min(n, this.buffered);
    out.set(this.#buf.subarray(this.#start, this.#start + got));
    this.#consume(got);
    while (got < n) {
      const r = await this.#source.read(out.subarray(got));
      if (r === null) this.#closedEarly(got, n);
      got += r;
    }
    return out;
  }

  /** Reads one byte. @throws {VicoError} `CONNECTION_CLOSED` at end of stream. */
  async readU8(): Promise<number> {
    await this.#ensure(1);
    const v = this.#buf[this.#start];
    this.#consume(1);
    return v;
  }

  /** Reads a big-endian u16. @throws {VicoError} `CONNECTION_CLOSED` at end of stream. */
  async readU16(): Promise<number> {
    await this.#ensure(2);
    const v = this.#view.getUint16(this.#start);
    this.#consume(2);
    return v;
  }

  /** Reads a big-endian u32. @throws {VicoError} `CONNECTION_CLOSED` at end of stream. */
  async readU32(): Promise<number> {
    await this.#ensure(4);
    const v = this.#view.getUint32(this.#start);
    this.#consume(4);
    return v;
  }

  /**
   * Returns the next byte without consuming it.
   *
   * @returns The byte, or `null` if the stream ended.
   */
  async peekU8(): Promise<number | null> {
    if (this.buffered === 0 && !await this.#fill()) return null;
    return this.#buf[this.#start];
  }

  /**
   * Streams exactly `n` bytes to `sink` in chunks, never holding more than
   * one chunk. Each chunk is only valid until the sink's promise settles.
   *
   * @throws {VicoError} `CONNECTION_CLOSED` if the stream ends first.
   */
  async pipeExact(n: number, sink: ChunkSink): Promise<void> {
    let left = n;
    while (left > 0 && this.buffered > 0) {
      const take = Math.min(left, this.buffered);
      const chunk = this.#buf.subarray(this.#start, this.#start + take);
      this.#consume(take);
      left -= take;
      await sink(chunk);
    }
    if (left === 0) return;
    // Past the buffer, read straight into a large scratch chunk, never
    // asking the source for more than the payload's remaining bytes. The
    // chunk is dropped afterwards: idle connections keep only their buffer.
    const scratch = new Uint8Array(Math.min(this.#pipeChunk, left));
    while (left > 0) {
      const r = await this.#source.read(scratch.subarray(0, Math.min(left, scratch.length)));
      if (r === null) this.#closedEarly(n - left, n);
      left -= r;
      await sink(scratch.subarray(0, r));
    }
  }

  #consume(k: number): void {
    this.#start += k;
    if (this.#start === this.#end) this.#start = this.#end = 0;
  }

  async #ensure(k: number): Promise<void> {
    while (this.buffered < k) {
      if (!await this.#fill()) this.#closedEarly(this.buffered, k);
    }
  }

  /**
   * Reads once from the source into the buffer, compacting it when little
   * room is left and doubling it only when it is full of unconsumed bytes
   * (`readLine` bounds that growth by its line limit). Returns false at end
   * of stream.
   */
  #fill(): Promise<boolean> {
    // One source read at a time: a read issued while a peek is still waiting
    // for bytes shares that peek's read instead of racing it.
    return this.#filling ??= this.#fillOnce().finally(() => (this.#filling = undefined));
  }

  async #fillOnce(): Promise<boolean> {
    if (this.#eof) return false;
    if (this.#buf.length - this.#end < COMPACT_BELOW && this.#start > 0) {
      this.#buf.copyWithin(0, this.#start, this.#end);
      this.#end -= this.#start;
      this.#start = 0;
    }
    if (this.#end === this.#buf.length) {
      const grown = new Uint8Array(this.#buf.length * 2);
      grown.set(this.#buf);
      this.#buf = grown;
      this.#view = new DataView(grown.buffer);
    }
    const n = await this.#source.read(this.#buf.subarray(this.#end));
    if (n === null) {
      this.#eof = true;
      return false;
    }
    this.#end += n;
    return true;
  }

  #decode(bytes: Uint8Array): string {
    // Protocol lines are mostly short and ASCII: that is decoded here, without a call into the runtime.
    if (bytes.length <= ASCII_FAST_MAX) {
      let ascii = true;
      for (let i = 0; i < bytes.length; i++) {
        if (bytes[i] >= 0x80) {
          ascii = false;
          break;
        }
      }
      if (ascii) return String.fromCharCode.apply(null, bytes as unknown as number[]);
    }
    try {
      return this.#decoder.decode(bytes);
    } catch {
      throw new ProtocolError("Line is not valid UTF-8", bytes);
    }
  }

  #lineTooLong(bytes: Uint8Array): never {
    throw new ProtocolError(
      `Line exceeds the limit of ${this.#maxLine} bytes`,
      bytes.subarray(0, 40),
    );
  }

  #closedEarly(got: number, wanted: number): never {
    throw new VicoError(
      "CONNECTION_CLOSED",
      `Connection closed after ${got} of ${wanted} expected bytes`,
    );
  }
}
