/**
 * A FIFO mutex: the runner's communication lock, so that exactly one worker
 * talks to the manager at a time, in the order they asked.
 *
 * @module
 */

/** Mutual exclusion for async sections, granted in request order. */
export class Mutex {
  #tail: Promise<void> = Promise.resolve();

  /** Runs `fn` when every earlier holder has finished, and returns its result. */
  run<T>(fn: () => Promise<T>): Promise<T> {
    const result = this.#tail.then(fn);
    this.#tail = result.then(() => {}, () => {});
    return result;
  }
}
