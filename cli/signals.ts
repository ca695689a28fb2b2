/**
 * Signal handling of the entry points: both stop gracefully on the first
 * SIGINT or SIGTERM and at once on the next.
 *
 * @module
 */

/** The signals that stop `manager` and `runner`. */
export type StopSignal = "SIGINT" | "SIGTERM";

/**
 * Calls `onSignal` with the signal and how many stop signals have come so
 * far (1 for the first), until the returned function removes the handlers.
 */
export function onStopSignals(onSignal: (sig: StopSignal, count: number) => void): () => void {
  let count = 0;
  const handlers = (["SIGINT", "SIGTERM"] as const).map((sig) => {
    const handler = () => onSignal(sig, ++count);
    Deno.addSignalListener(sig, handler);
    return [sig, handler] as const;
  });
  return () => {
    for (const [sig, handler] of handlers) Deno.removeSignalListener(sig, handler);
  };
}
