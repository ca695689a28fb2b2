/**
 * Signal handling of the entry points: both stop gracefully on the first
 * SIGINT, SIGTERM, SIGHUP or SIGQUIT and at once on the next. SIGHUP (a
 * dropped ssh session, a closed terminal) and SIGQUIT (Ctrl-\\) would
 * otherwise end the process at once by default and leave its running jobs
 * behind, owned by init, while a restart ran them again.
 *
 * @module
 */

/** The signals that stop `manager` and `runner`. */
export type StopSignal = "SIGINT" | "SIGTERM" | "SIGHUP" | "SIGQUIT";

/** Every {@linkcode StopSignal}. */
export const STOP_SIGNALS: readonly StopSignal[] = ["SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT"];

/**
 * Calls `onSignal` with the signal and how many stop signals have come so
 * far (1 for the first), until the returned function removes the handlers.
 */
export function onStopSignals(onSignal: (sig: StopSignal, count: number) => void): () => void {
  let count = 0;
  const handlers = STOP_SIGNALS.map((sig) => {
    const handler = () => onSignal(sig, ++count);
    Deno.addSignalListener(sig, handler);
    return [sig, handler] as const;
  });
  return () => {
    for (const [sig, handler] of handlers) Deno.removeSignalListener(sig, handler);
  };
}
