/**
 * The one journal reader: reads `journal.jsonl` (one JSON object a line) in
 * bounded memory, from any byte offset, handing on each record with its byte
 * offsets and line number.
 *
 * The one torn-tail rule: a last line without its newline, or that does not
 * parse, is a torn tail (a crash while appending, or a line still being
 * written). Readers stop before it and report where it starts; the writer
 * (the manager, when it opens the results directory) cuts it off. A line
 * that does not parse and is followed by anything is damage: a
 * {@linkcode JournalDamagedError} (`JOURNAL_DAMAGED`) with its line number.
 *
 * {@linkcode JournalSplitter} is the pure part (bytes in, records out, in
 * any chunking); {@linkcode readJournal} feeds it from a file.
 *
 * @module
 */

import { JournalDamagedError } from "../core/errors.ts";

/** One complete record of a journal. */
export interface JournalEntry {
  /** The parsed line: a JSON object (not null). */
  record: Record<string, unknown>;
  /** Byte offset where its line starts. */
  offset: number;
  /** Byte offset just past its newline. */
  end: number;
  /** 1-based line number (counted from where the read started). */
  line: number;
}

/** Where a read ended. */
export interface JournalTail {
  /** Byte offset just past the last complete record: where the next read starts. */
  end: number;
  /** Line number the next read starts with. */
  nextLine: number;
  /** A torn last line (see the module doc): where it starts and how many bytes it has. */
  torn?: { offset: number; line: number; bytes: number };
}

/** Options of {@linkcode JournalSplitter} and {@linkcode readJournal}. */
export interface JournalReadOptions {
  /** Byte offset of the first byte (it must start a line). @default {0} */
  offset?: number;
  /** Line number of the first line. @default {1} */
  line?: number;
  /** Longest line accepted; a longer one is damage. @default {64 MiB} */
  maxLineBytes?: number;
  /**
   * Byte offset to stop at (it must end a line): a reader in the writer's
   * process passes the length of what is durable, since bytes past it may
   * still be cut back (a failed write) and written over. Only
   * {@linkcode readJournal} uses it. @default {the file's end}
   */
  end?: number;
}

/** Default {@linkcode JournalReadOptions.maxLineBytes}: no journal record comes near it. */
export const MAX_JOURNAL_LINE_BYTES = 1 << 26;

const NL = 0x0a;

/**
 * Splits journal bytes, pushed in any chunking, into records (see the module
 * doc for the torn-tail rule). Holds at most one partial line.
 *
 * @example
 * ```ts
 * import { JournalSplitter } from "./journal_reader.ts";
 * const s = new JournalSplitter("journal.jsonl");
 * const bytes = new TextEncoder().encode('{"a":1}\n{"a":');
 * console.assert(s.push(bytes.subarray(0, 3)).length === 0);
 * console.assert(s.push(bytes.subarray(3))[0].record.a === 1);
 * console.assert(s.finish().torn?.offset === 8);
 * ```
 */
export class JournalSplitter {
  readonly #path: string;
  readonly #maxLine: number;
  readonly #decoder = new TextDecoder("utf-8", { fatal: true });
  /** Pieces of the partial line so far (copies). */
  #parts: Uint8Array[] = [];
  #partBytes = 0;
  /** Offset and line of the next line's start. */
  #at: number;
  #line: number;
  /** End of the last good record. */
  #end: number;
  /** A complete line that did not parse: torn if nothing follows, damage otherwise. */
  #bad: { offset: number; line: number; bytes: number } | undefined;
  /** Damage found: thrown by the next push or finish, after the records before it. */
  #damage: JournalDamagedError | undefined;

  /**
   * @param path The journal's name, for errors.
   * @param options Where the bytes start.
   */
  constructor(path: string, options: JournalReadOptions = {}) {
    this.#path = path;
    this.#maxLine = options.maxLineBytes ?? MAX_JOURNAL_LINE_BYTES;
    this.#at = this.#end = options.offset ?? 0;
    this.#line = options.line ?? 1;
  }

  /**
   * Takes the next bytes; returns the records they complete, in order. The
   * chunk is not kept (a reused read buffer is fine). Damage in a chunk
   * still returns the records before it; the next call throws it.
   *
   * @throws {JournalDamagedError} for a line that does not parse but is not the last.
   */
  push(chunk: Uint8Array): JournalEntry[] {
    if (this.#damage !== undefined) throw this.#damage;
    const out: JournalEntry[] = [];
    if (chunk.length === 0) return out;
    if (this.#bad !== undefined) throw this.#damaged(this.#bad.line, this.#bad.offset, "does not parse");
    let from = 0;
    for (let nl = chunk.indexOf(NL); nl !== -1; nl = chunk.indexOf(NL, from)) {
      const piece = chunk.subarray(from, nl);
      const lineBytes = this.#partBytes + piece.length;
      if (lineBytes > this.#maxLine) return this.#stop(out, this.#damaged(this.#line, this.#at, "line too long"));
      const bytes = this.#parts.length === 0 ? piece : this.#join(piece);
      const offset = this.#at, line = this.#line;
      const end = offset + lineBytes + 1;
      this.#at = end;
      this.#line++;
      from = nl + 1;
      const record = this.#parse(bytes);
      if (record === undefined) {
        if (from < chunk.length) return this.#stop(out, this.#damaged(line, offset, "does not parse"));
        this.#bad = { offset, line, bytes: lineBytes + 1 };
        return out;
      }
      this.#end = end;
      out.push({ record, offset, end, line });
    }
    if (from < chunk.length) {
      if (this.#partBytes + chunk.length - from > this.#maxLine) {
        return this.#stop(out, this.#damaged(this.#line, this.#at, "line too long"));
      }
      this.#parts.push(chunk.slice(from));
      this.#partBytes += chunk.length - from;
    }
    return out;
  }

  /**
   * The bytes ended: where the last record ended, and the torn tail if any.
   *
   * @throws {JournalDamagedError} for damage the last push found.
   */
  finish(): JournalTail {
    if (this.#damage !== undefined) throw this.#damage;
    if (this.#bad !== undefined) return { end: this.#end, nextLine: this.#bad.line, torn: this.#bad };
    if (this.#partBytes > 0) {
      return {
        end: this.#end,
        nextLine: this.#line,
        torn: { offset: this.#at, line: this.#line, bytes: this.#partBytes },
      };
    }
    return { end: this.#end, nextLine: this.#line };
  }

  #stop(out: JournalEntry[], damage: JournalDamagedError): JournalEntry[] {
    this.#damage = damage;
    this.#parts = [];
    this.#partBytes = 0;
    return out;
  }

  #join(last: Uint8Array): Uint8Array {
    const out = new Uint8Array(this.#partBytes + last.length);
    let at = 0;
    for (const p of this.#parts) {
      out.set(p, at);
      at += p.length;
    }
    out.set(last, at);
    this.#parts = [];
    this.#partBytes = 0;
    return out;
  }

  #parse(bytes: Uint8Array): Record<string, unknown> | undefined {
    try {
      const value = JSON.parse(this.#decoder.decode(bytes));
      return value !== null && typeof value === "object" ? value : undefined;
    } catch {
      return undefined;
    }
  }

  #damaged(line: number, offset: number, why: string): JournalDamagedError {
    return new JournalDamagedError(this.#path, line, offset, why);
  }
}

/** Bytes read from the journal at a time. */
const READ_BYTES = 1 << 16;

/**
 * Reads the journal at `path` from `options.offset` to its current end and
 * hands each complete record to `onRecord`, in order (the next read waits
 * for a returned promise). Memory stays bounded by the read size and the
 * longest line, whatever the journal's length.
 *
 * @example
 * ```ts ignore
 * import { readJournal } from "./journal_reader.ts";
 * let jobs = 0;
 * const tail = await readJournal("res/journal.jsonl", ({ record }) => {
 *   if (record.type === "job") jobs++;
 * });
 * // Later, only what was appended since:
 * await readJournal("res/journal.jsonl", () => {}, { offset: tail.end, line: tail.nextLine });
 * ```
 * @returns Where the last complete record ended and the torn tail, if any.
 * @throws {Deno.errors.NotFound} when there is no journal.
 * @throws {JournalDamagedError} for damage before the last line.
 */
export async function readJournal(
  path: string,
  onRecord: (entry: JournalEntry) => void | Promise<void>,
  options: JournalReadOptions = {},
): Promise<JournalTail> {
  using file = await Deno.open(path, { read: true });
  if ((options.offset ?? 0) > 0) await file.seek(options.offset!, Deno.SeekMode.Start);
  const splitter = new JournalSplitter(path, options);
  const buf = new Uint8Array(READ_BYTES);
  let left = options.end === undefined ? Infinity : options.end - (options.offset ?? 0);
  while (left > 0) {
    const n = await file.read(left < buf.length ? buf.subarray(0, left) : buf);
    if (n === null) break;
    left -= n;
    for (const entry of splitter.push(buf.subarray(0, n))) {
      const done = onRecord(entry);
      if (done !== undefined) await done;
    }
  }
  return splitter.finish();
}
