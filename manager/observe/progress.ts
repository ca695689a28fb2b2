/**
 * What the user sees while a run goes and when it ends: a progress bar with
 * rate, ETA, running jobs and runners on a terminal; off a terminal, a
 * progress line logged every few seconds; and a one-screen summary.
 *
 * @module
 */

import { logger, setStatusLine, writeStderr } from "../../util/log.ts";
import type { RunSummary } from "../manager.ts";
import type { StatusCounts } from "./run_status.ts";
import { printable } from "../../util/printable.ts";

/** Formats a duration in seconds as `42s`, `3m05s` or `2h07m`. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return "?";
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
}

/** A one-line progress bar on stderr from a live run's counts, redrawn 10 times a second. */
export class ProgressBar {
  readonly #counts: () => StatusCounts;
  #drawn = false;
  readonly #timer: ReturnType<typeof setInterval>;

  /** @param counts The run's live counts (its {@linkcode RunStatus}). */
  constructor(counts: () => StatusCounts) {
    this.#counts = counts;
    setStatusLine(this);
    this.#timer = setInterval(() => this.redraw(), 100);
  }

  /** Erases the bar. */
  clear(): void {
    if (this.#drawn) writeStderr("\r\x1b[2K");
    this.#drawn = false;
  }

  /** Draws the bar. */
  redraw(): void {
    writeStderr(`\r\x1b[2K${formatProgressBar(this.#counts())}`);
    this.#drawn = true;
  }

  /** Removes the bar for good. */
  stop(): void {
    clearInterval(this.#timer);
    this.clear();
    setStatusLine(undefined);
  }
}

/** The progress bar's line for live counts: bar, settled/total, rate, ETA, running, runners, failed. */
export function formatProgressBar(c: StatusCounts, width = 30): string {
  const j = c.jobs;
  const settled = j.done + j.failed;
  const share = j.total === 0 ? 1 : settled / j.total;
  const filled = Math.min(width, Math.round(share * width));
  const failed = j.failed > 0 ? `  ${j.failed} failed` : "";
  const bar = `[${"#".repeat(filled)}${"-".repeat(width - filled)}]`;
  return `${bar} ${settled}/${j.total} ${Math.floor(share * 100)}%  ${formatRate(c.rate)} jobs/s  ETA ${formatEta(c)}` +
    `  ${j.running} running  ${c.runners} runner(s)${failed}`;
}

/** The line logged every few seconds off a terminal. */
export function formatProgressLine(c: StatusCounts): string {
  const j = c.jobs;
  const settled = j.done + j.failed;
  const lost = j.lost > 0 ? ` (${j.lost} lost)` : "";
  const leased = j.leased > 0 ? ` (${j.leased} waiting for their runner)` : "";
  return `Progress: ${settled}/${j.total} settled, ${j.done} ok, ${j.failed} failed${lost}, ` +
    `${j.running} running${leased}, ${j.pending} pending; ${c.runners} runner(s); ${formatRate(c.rate)} jobs/s; ` +
    `ETA ${formatEta(c)}; elapsed ${formatDuration(c.elapsedSeconds)}`;
}

function formatRate(rate: number): string {
  return rate.toFixed(rate < 10 ? 1 : 0);
}

function formatEta(c: StatusCounts): string {
  return c.finished ? "0s" : c.etaSeconds === null ? "?" : formatDuration(c.etaSeconds);
}

/**
 * Off a terminal: logs a {@linkcode formatProgressLine} every `intervalMs`
 * (not at all for runs shorter than that).
 */
export class ProgressLog {
  readonly #timer: ReturnType<typeof setInterval>;

  /**
   * @param counts Live counts.
   * @param intervalMs How often. @default {10000}
   * @param write Where the line goes. @default {an info log record}
   */
  constructor(
    counts: () => StatusCounts,
    intervalMs = 10_000,
    write: (line: string) => void = (line) => logger("progress").info("{line}", { line }),
  ) {
    this.#timer = setInterval(() => write(formatProgressLine(counts())), intervalMs);
  }

  /** Stops logging. */
  stop(): void {
    clearInterval(this.#timer);
  }
}

/**
 * The end-of-run summary, a few lines for the terminal (host names through
 * {@linkcode printable}). A stopped run says how to finish it: `finish`,
 * by default running again on the same results.
 */
export function formatSummary(summary: RunSummary, finish = "run again on the same results to finish"): string {
  const secs = summary.elapsedMs / 1000;
  const toRun = summary.jobs - summary.skipped;
  const ran = toRun - summary.unsettled;
  const rate = secs > 0 ? ran / secs : 0;
  const tally = `of ${summary.jobs} in the list ${summary.succeeded} succeeded, ${summary.failed} failed`;
  const took = `in ${secs.toFixed(2)}s (${rate.toFixed(1)} jobs/s)`;
  const lines = summary.stopped
    ? [
      `vico: ${ran} of ${toRun} run ${took}, ${summary.unsettled} left; ${finish}`,
      `  stopped with ${summary.unsettled} job(s) unsettled; ${tally}`,
    ]
    : [`vico: ${ran} job(s) run ${took}; ${tally}`];
  if (summary.skipped > 0) lines.push(`  ${summary.skipped} job(s) were settled by an earlier run and not run again`);
  const hosts = summary.byHost;
  const shown = hosts.slice(0, 10);
  for (const [host, count] of shown) {
    lines.push(`  ${printable(host).padEnd(24)} ${String(count).padStart(8)} job(s)`);
  }
  if (hosts.length > shown.length) {
    const rest = hosts.slice(shown.length).reduce((n, [, c]) => n + c, 0);
    lines.push(`  … ${hosts.length - shown.length} more runner(s) ${String(rest).padStart(8)} job(s)`);
  }
  lines.push(`  results: ${printable(summary.resultsDir)}/journal.jsonl`);
  return lines.join("\n") + "\n";
}
