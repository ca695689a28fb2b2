/**
 * Waiting with a deadline, leaving no timer behind.
 *
 * @module
 */

/**
 * Waits for `promise` at most `ms` milliseconds.
 *
 * @returns Whether it settled in time (its rejection is swallowed).
 */
export async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const inTime = await Promise.race([
    promise.then(() => true, () => true),
    new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), ms))),
  ]);
  clearTimeout(timer);
  return inTime;
}
