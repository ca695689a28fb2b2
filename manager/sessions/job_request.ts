/**
 * The ask-then-wait request to the scheduler: a session asks for a job and
 * waits for the scheduler's answer (assign, refuse or release), which may
 * come at once, inside the ask, or later, while the scheduler holds the
 * request back (no job free yet, a gang filling up). Meanwhile the session
 * watches its peer, which may only pulse (or answer Status) or leave.
 *
 * @module
 */

/** One session's pending request for a job; `A` is the scheduler's answer as the session keeps it. */
export class JobRequest<A> {
  #reply: ((answer: A) => void) | undefined;

  /** Whether a request waits for its answer. */
  get pending(): boolean {
    return this.#reply !== undefined;
  }

  /** The scheduler's answer to the pending request (none pending: ignored). */
  answer(answer: A): void {
    const reply = this.#reply;
    this.#reply = undefined;
    reply?.(answer);
  }

  /**
   * Asks; the answer, if the scheduler gave it inside the ask (the usual
   * case: no turn of the event loop), else a promise of it (the request
   * stays pending until answered). For a session that watches its peer
   * elsewhere (the pipelined exchange).
   */
  ask(ask: () => void): { readonly answer: A } | Promise<A> {
    let now: { answer: A } | undefined;
    this.#reply = (answer) => (now = { answer });
    try {
      ask();
    } catch (err) {
      this.#reply = undefined;
      throw err;
    }
    if (now !== undefined) {
      this.#reply = undefined;
      return now;
    }
    return new Promise<A>((resolve) => (this.#reply = resolve));
  }

  /**
   * Asks and waits for the answer.
   *
   * @param ask Asks the scheduler (`scheduler.onJobRequest(link)`); it may answer at once.
   * @param hold Waits for `answered` while watching the peer; rejects when the peer leaves or breaks the protocol.
   * @returns The answer; once this settles no answer is pending.
   */
  async request(ask: () => void, hold: (answered: Promise<A>) => Promise<A>): Promise<A> {
    let now: { answer: A } | undefined;
    this.#reply = (answer) => (now = { answer });
    try {
      ask();
      if (now !== undefined) return now.answer;
      return await hold(new Promise<A>((resolve) => (this.#reply = resolve)));
    } finally {
      this.#reply = undefined;
    }
  }
}
