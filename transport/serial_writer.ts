/**
 * Whole messages to one {@linkcode Transport} from several writers at once:
 * each message goes out whole (never interleaved with another, even when
 * the transport writes in parts), in the order written, and the messages
 * queued while a write is in flight go out together in one write. The
 * pipelined text exchange uses it: answers to `PETO`, acknowledgements and
 * pulses come from independent tasks.
 *
 * @module
 */

import type { Transport } from "./transport.ts";

/** Serialises (and coalesces) whole messages onto a transport. */
export class SerialWriter {
  readonly #transport: Pick<Transport, "write">;
  #queue: Uint8Array[] = [];
  #queued = 0;
  #flushing: Promise<void> | undefined;
  #failure: unknown;

  /** @param transport Where the messages go. */
  constructor(transport: Pick<Transport, "write">) {
    this.#transport = transport;
  }

  /**
   * Queues one whole message. Resolves once it (and whatever was queued
   * with it) is written; rejects if the transport failed, and so does every
   * later write.
   *
   * @example
   * ```ts
   * import { SerialWriter } from "./serial_writer.ts";
   * const sent: string[] = [];
   * const w = new SerialWriter({ write: (p) => (sent.push(new TextDecoder().decode(p)), Promise.resolve()) });
   * await Promise.all([w.write(new TextEncoder().encode("FINO\n")), w.write(new TextEncoder().encode("PULSO\n"))]);
   * console.assert(sent.join("") === "FINO\nPULSO\n");
   * ```
   */
  write(message: Uint8Array): Promise<void> {
    if (this.#failure !== undefined) return Promise.reject(this.#failure);
    this.#queue.push(message);
    this.#queued += message.length;
    return this.#flushing ??= this.#flush();
  }

  /** Resolves once everything queued so far is written (or the transport failed). */
  async drain(): Promise<void> {
    while (this.#flushing !== undefined) await this.#flushing.catch(() => {});
  }

  async #flush(): Promise<void> {
    try {
      // Let the writers of this turn queue theirs first: they go out in one write.
      await Promise.resolve();
      while (this.#queue.length > 0) {
        const parts = this.#queue;
        const size = this.#queued;
        this.#queue = [];
        this.#queued = 0;
        let bytes = parts[0];
        if (parts.length > 1) {
          bytes = new Uint8Array(size);
          let at = 0;
          for (const p of parts) {
            bytes.set(p, at);
            at += p.length;
          }
        }
        await this.#transport.write(bytes);
      }
    } catch (err) {
      this.#failure = err;
      this.#queue = [];
      throw err;
    } finally {
      this.#flushing = undefined;
    }
  }
}
