/**
 * One byte budget shared by every connection that has not completed its
 * handshake (`HANDSHAKE_BUDGET_BYTES` in `core/limits.ts`): whatever the split (one
 * connection with huge held-job lines, or many with a little each), what
 * unauthenticated and handshaking peers make the manager hold stays under it.
 * Pure bookkeeping: the server charges each read and closes what this says.
 *
 * @module
 */

/** Bytes charged per connection (any key), against one shared limit. */
export class HandshakeBudget<K> {
  /** The shared limit in bytes. */
  readonly limit: number;
  readonly #accounts = new Map<K, number>();
  #used = 0;

  /** @param limit The shared limit in bytes (`HANDSHAKE_BUDGET_BYTES` by default). */
  constructor(limit: number) {
    this.limit = limit;
  }

  /** Bytes charged to all connections together. */
  get used(): number {
    return this.#used;
  }

  /** Bytes charged to `key`. */
  heldBy(key: K): number {
    return this.#accounts.get(key) ?? 0;
  }

  /**
   * Charges `bytes` to `key`. While the total is over the limit, the
   * connection holding the most is released and named in the result, to be
   * closed (so an attacker's big handshake goes before an honest small one).
   *
   * @example
   * ```ts
   * import { HandshakeBudget } from "./handshake_budget.ts";
   * const budget = new HandshakeBudget<string>(100);
   * budget.charge("honest", 10);
   * console.assert(budget.charge("greedy", 95)[0]?.key === "greedy");
   * console.assert(budget.used === 10);
   * ```
   * @returns The connections to close, biggest first, each with what it held.
   */
  charge(key: K, bytes: number): { key: K; bytes: number }[] {
    this.#accounts.set(key, this.heldBy(key) + bytes);
    this.#used += bytes;
    const over: { key: K; bytes: number }[] = [];
    while (this.#used > this.limit) {
      let biggest: K = key, most = -1;
      for (const [k, held] of this.#accounts) if (held > most) [biggest, most] = [k, held];
      this.release(biggest);
      over.push({ key: biggest, bytes: most });
    }
    return over;
  }

  /** Releases everything charged to `key` (its handshake completed, or it closed). */
  release(key: K): void {
    this.#used -= this.heldBy(key);
    this.#accounts.delete(key);
  }
}
