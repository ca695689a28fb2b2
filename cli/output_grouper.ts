/**
 * Jobs' outputs on the terminal, as GNU Parallel groups them: each job's
 * output is printed whole when the job ends, never interleaved with
 * another's.
 *
 * - Default: in the order jobs end.
 * - Keep order (`-k`): in list order. A job that ended early waits for
 *   those before it; the grouper keeps only its number, never its bytes:
 *   when its turn comes it prints the job's **stored output file** (the
 *   results directory already holds every job's output, byte for byte), so
 *   memory stays bounded however far ahead jobs finish.
 * - Tag (`--tag`): each line, the last one even without a final newline,
 *   is prefixed with the job's tag and a tab (Parallel's tag is the job's
 *   arguments joined with spaces: {@linkcode parallelTag}). A job with no
 *   output prints nothing.
 *
 * The grouper is pure of I/O: it is given a writer (standard output) and a
 * way to read job N's stored output.
 *
 * @module
 */

/** What the grouper writes to and reads from. */
export interface OutputGrouperOptions {
  /** Writes bytes where people look (standard output), all of them before resolving. */
  readonly write: (bytes: Uint8Array) => Promise<void>;
  /** Job `seq`'s stored output, complete (it has ended), read in chunks. */
  readonly stored: (seq: number) => AsyncIterable<Uint8Array>;
  /** Print in list order (`-k`). @default {false} */
  readonly keepOrder?: boolean;
  /** Each job's tag (`--tag`): each line is prefixed with it and a tab. */
  readonly tag?: (seq: number) => string;
  /** The first sequence number of the list. @default {1} */
  readonly firstSeq?: number;
}

/**
 * Parallel's default tag: the job's arguments joined with spaces, as given (not quoted).
 *
 * @example
 * ```ts
 * import { parallelTag } from "./output_grouper.ts";
 * console.assert(parallelTag(["b c", "1"]) === "b c 1");
 * ```
 */
export function parallelTag(args: readonly string[]): string {
  return args.join(" ");
}

/**
 * Prints jobs' stored outputs whole, one at a time.
 *
 * @example
 * ```ts
 * import { OutputGrouper } from "./output_grouper.ts";
 * const printed: string[] = [];
 * const g = new OutputGrouper({
 *   keepOrder: true,
 *   write: async (b) => void printed.push(new TextDecoder().decode(b)),
 *   stored: (seq) => ReadableStream.from([new TextEncoder().encode(`job ${seq}\n`)]),
 * });
 * await Promise.all([g.finished(2), g.finished(1)]);
 * console.assert(printed.join("") === "job 1\njob 2\n");
 * ```
 */
export class OutputGrouper {
  readonly #options: OutputGrouperOptions;
  /** Next sequence number to print, in keep-order mode. */
  #next: number;
  /** Ended (true) or skipped (false) jobs waiting for their turn, in keep-order mode. */
  readonly #waiting = new Map<number, boolean>();
  /** The printing in progress: prints happen one after another. */
  #tail: Promise<void> = Promise.resolve();

  /** @param options Where to write, how to read stored outputs, and the mode. */
  constructor(options: OutputGrouperOptions) {
    this.#options = options;
    this.#next = options.firstSeq ?? 1;
  }

  /** Jobs ended or skipped but not printed yet, waiting for an earlier job (keep-order mode). */
  get waiting(): number {
    return this.#waiting.size;
  }

  /**
   * Job `seq` has ended and its stored output is complete: prints it now,
   * or, keeping order, once every job before it has been printed or skipped.
   * Resolves when what this call made printable is printed; rejects if
   * reading or writing failed (later prints still happen).
   */
  finished(seq: number): Promise<void> {
    return this.#settle(seq, true);
  }

  /**
   * Job `seq` will print nothing here (already done in a resumed run,
   * refused, or never started after a halt): keeping order, jobs after it
   * need not wait for it.
   */
  skipped(seq: number): Promise<void> {
    return this.#settle(seq, false);
  }

  /**
   * No more jobs will end: prints, in list order, the ended jobs still
   * waiting behind one that never ended (a halted run). Resolves once all
   * printing is done.
   */
  end(): Promise<void> {
    const rest = [...this.#waiting.entries()].filter(([, ended]) => ended).map(([seq]) => seq).sort((a, b) => a - b);
    this.#waiting.clear();
    return this.#enqueue(rest);
  }

  #settle(seq: number, ended: boolean): Promise<void> {
    if (!this.#options.keepOrder) return ended ? this.#enqueue([seq]) : this.#tail.catch(() => {});
    if (seq < this.#next || this.#waiting.has(seq)) return this.#tail.catch(() => {});
    this.#waiting.set(seq, ended);
    const ready: number[] = [];
    while (this.#waiting.has(this.#next)) {
      if (this.#waiting.get(this.#next)) ready.push(this.#next);
      this.#waiting.delete(this.#next);
      this.#next++;
    }
    return this.#enqueue(ready);
  }

  #enqueue(seqs: readonly number[]): Promise<void> {
    const run = this.#tail.catch(() => {}).then(async () => {
      let failure: { err: unknown } | undefined;
      for (const seq of seqs) {
        try {
          await this.#print(seq);
        } catch (err) {
          failure ??= { err };
        }
      }
      if (failure) throw failure.err;
    });
    this.#tail = run;
    return run;
  }

  async #print(seq: number): Promise<void> {
    const { write, stored, tag } = this.#options;
    if (tag === undefined) {
      for await (const chunk of stored(seq)) if (chunk.length > 0) await write(chunk);
      return;
    }
    const tagger = new LineTagger(new TextEncoder().encode(tag(seq) + "\t"));
    for await (const chunk of stored(seq)) {
      const out = tagger.push(chunk);
      if (out.length > 0) await write(out);
    }
  }
}

/** Prefixes each line of a byte stream (split anywhere) with a tag. */
export class LineTagger {
  readonly #prefix: Uint8Array;
  #atLineStart = true;

  /** @param prefix The bytes put before each line (tag and tab). */
  constructor(prefix: Uint8Array) {
    this.#prefix = prefix;
  }

  /**
   * The chunk with the prefix before each line that starts in it.
   *
   * @example
   * ```ts
   * import { LineTagger } from "./output_grouper.ts";
   * const t = new LineTagger(new TextEncoder().encode("a\t"));
   * const d = (b: Uint8Array) => new TextDecoder().decode(b);
   * console.assert(d(t.push(new TextEncoder().encode("x\ny"))) === "a\tx\na\ty");
   * console.assert(d(t.push(new TextEncoder().encode("z\n"))) === "z\n");
   * ```
   */
  push(chunk: Uint8Array): Uint8Array {
    if (chunk.length === 0) return chunk;
    let lines = 0;
    for (let i = 0; i < chunk.length; i++) if (chunk[i] === 0x0a && i + 1 < chunk.length) lines++;
    const starts = lines + (this.#atLineStart ? 1 : 0);
    const out = new Uint8Array(chunk.length + starts * this.#prefix.length);
    let at = 0;
    let from = 0;
    if (this.#atLineStart) {
      out.set(this.#prefix, at);
      at += this.#prefix.length;
    }
    for (let i = 0; i < chunk.length; i++) {
      if (chunk[i] !== 0x0a || i + 1 === chunk.length) continue;
      out.set(chunk.subarray(from, i + 1), at);
      at += i + 1 - from;
      from = i + 1;
      out.set(this.#prefix, at);
      at += this.#prefix.length;
    }
    out.set(chunk.subarray(from), at);
    this.#atLineStart = chunk[chunk.length - 1] === 0x0a;
    return out;
  }
}
