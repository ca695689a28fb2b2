/**
 * What the user sees while a run goes and when it ends: a progress bar with
 * rate and ETA on a terminal, and a one-screen summary.
 *
 * @module
 */

import { setStatusLine, writeStderr } from "../util/log.ts";
import type { RunSummary } from "./manager.ts";

/** Formats a duration in seconds as `42s`, `3m05s` or `2h07m`. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return "?";
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
}

/** A one-line progress bar on stderr, redrawn at most 10 times a second. */
export class ProgressBar {
  readonly #total: number;
  readonly #started = performance.now();
  #done = 0;
  #failed = 0;
  #drawn = false;
  #timer: ReturnType<typeof setInterval> | undefined;

  /** @param total Number of jobs. */
  constructor(total: number) {
    this.#total = total;
    setStatusLine(this);
    this.#timer = setInterval(() => this.redraw(), 100);
  }

  /** One more job settled. */
  tick(failed: boolean): void {
    this.#done++;
    if (failed) this.#failed++;
  }

  /** Erases the bar. */
  clear(): void {
    if (this.#drawn) writeStderr("\r\x1b[2K");
    this.#drawn = false;
  }

  /** Draws the bar. */
  redraw(): void {
    const elapsed = (performance.now() - this.#started) / 1000;
    const rate = elapsed > 0 ? this.#done / elapsed : 0;
    const eta = rate > 0 ? (this.#total - this.#done) / rate : Infinity;
    const width = 30;
    const filled = this.#total === 0 ? width : Math.round((this.#done / this.#total) * width);
    const pct = this.#total === 0 ? 100 : Math.floor((this.#done / this.#total) * 100);
    const failed = this.#failed > 0 ? `  ${this.#failed} failed` : "";
    const line = `[${"#".repeat(filled)}${"-".repeat(width - filled)}] ${this.#done}/${this.#total} ${pct}%  ` +
      `${rate.toFixed(rate < 10 ? 1 : 0)} jobs/s  ETA ${
        this.#done === this.#total ? "0s" : formatDuration(eta)
      }${failed}`;
    writeStderr(`\r\x1b[2K${line}`);
    this.#drawn = true;
  }

  /** Removes the bar for good. */
  stop(): void {
    clearInterval(this.#timer);
    this.clear();
    setStatusLine(undefined);
  }
}

/** The end-of-run summary, a few lines for the terminal. */
export function formatSummary(summary: RunSummary): string {
  const secs = summary.elapsedMs / 1000;
  const ran = summary.jobs - summary.skipped;
  const rate = secs > 0 ? ran / secs : 0;
  const lines = [
    `vico: ${ran} job(s) run in ${secs.toFixed(2)}s (${rate.toFixed(1)} jobs/s); ` +
    `of ${summary.jobs} in the list ${summary.succeeded} succeeded, ${summary.failed} failed`,
  ];
  if (summary.skipped > 0) lines.push(`  ${summary.skipped} job(s) were settled by an earlier run and not run again`);
  if (summary.stopped) {
    lines.push(`  stopped with ${summary.unsettled} job(s) unsettled: run again on the same results to finish them`);
  }
  const hosts = summary.byHost;
  const shown = hosts.slice(0, 10);
  for (const [host, count] of shown) lines.push(`  ${host.padEnd(24)} ${String(count).padStart(8)} job(s)`);
  if (hosts.length > shown.length) {
    const rest = hosts.slice(shown.length).reduce((n, [, c]) => n + c, 0);
    lines.push(`  … ${hosts.length - shown.length} more runner(s) ${String(rest).padStart(8)} job(s)`);
  }
  lines.push(`  results: ${summary.resultsDir}/journal.jsonl`);
  return lines.join("\n") + "\n";
}
