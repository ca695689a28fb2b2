/**
 * Tells the user when the fleet cannot finish the job list: jobs wait and no
 * runner is connected, or some tasks need what no runner seen lately offers
 * (binary nodes connect per task, so "lately" is a window, not "now").
 *
 * @module
 */

import { logger } from "../../util/log.ts";
import type { JobClass } from "../jobs/job_list.ts";
import type { JobQueue } from "../jobs/job_queue.ts";
import type { RunnerLink, Scheduler } from "./scheduler.ts";

const log = logger("manager");

/** Describes a job class for people: `any runner`, `binary nodes with modules a,b`, `gangs of 3 nodes`. */
export function describeClass(cls: JobClass): string {
  if (!cls.binaryOnly) return "any runner";
  const parts = ["binary nodes"];
  if (cls.modules.length > 0) parts.push(`with modules ${cls.modules.join(",")}`);
  if (cls.nodes > 1) parts.push(`in gangs of ${cls.nodes}`);
  return parts.join(" ");
}

/** Watches the fleet against the queue and warns once per episode. */
export class FleetWatch {
  readonly #classes: readonly JobClass[];
  readonly #queue: JobQueue;
  readonly #scheduler: Scheduler;
  readonly #windowMs: number;
  /** Capability signature → what it accepts and when it was last seen. */
  readonly #seen = new Map<string, { accepts: boolean[]; at: number }>();
  #emptySince: number | undefined;
  #warnedEmpty = false;
  #warnedClasses = "";
  #timer: ReturnType<typeof setInterval> | undefined;

  /**
   * @param classes The list's job classes.
   * @param queue The queue.
   * @param scheduler The scheduler (for connected runners).
   * @param windowMs How long a capability counts after its runner was seen.
   */
  constructor(classes: readonly JobClass[], queue: JobQueue, scheduler: Scheduler, windowMs = 60_000) {
    this.#classes = classes;
    this.#queue = queue;
    this.#scheduler = scheduler;
    this.#windowMs = windowMs;
  }

  /** Checks every `everyMs` from now until {@linkcode stop}. */
  start(everyMs = 5000): void {
    this.#timer ??= setInterval(() => this.check(), everyMs);
  }

  /** Stops the checks {@linkcode start} began. */
  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** Logs what the list needs, once at start-up. */
  announce(): void {
    if (this.#classes.length < 2 && !this.#classes[0]?.binaryOnly) return;
    const parts = this.#classes
      .map((cls, c) => [this.#queue.unsettledIn(c), describeClass(cls)] as const)
      .filter(([n]) => n > 0)
      .map(([n, what]) => `${n} for ${what}`);
    if (parts.length > 0) log.info("Jobs to run: {parts}", { parts: parts.join("; ") });
  }

  /** A runner joined: remember what it can take. */
  onJoined(link: RunnerLink, now: number = Date.now()): void {
    const accepts = this.#classes.map((c) => link.accepts(c));
    this.#seen.set(accepts.map((a) => (a ? "1" : "0")).join(""), { accepts, at: now });
  }

  /** Periodic check; returns what it warned about (for tests). */
  check(now: number = Date.now()): string[] {
    const warnings: string[] = [];
    if (this.#queue.pending > 0 && this.#scheduler.runners === 0) {
      this.#emptySince ??= now;
      if (!this.#warnedEmpty && now - this.#emptySince >= 10_000) {
        this.#warnedEmpty = true;
        warnings.push(`${this.#queue.pending} job(s) are waiting and no runner is connected`);
      }
    } else {
      this.#emptySince = undefined;
      this.#warnedEmpty = false;
    }
    const unserved: string[] = [];
    if (this.#seen.size > 0) {
      for (let c = 0; c < this.#classes.length; c++) {
        const left = this.#queue.unsettledIn(c);
        if (left === 0) continue;
        let served = false;
        for (const { accepts, at } of this.#seen.values()) {
          if (now - at <= this.#windowMs && accepts[c]) served = true;
        }
        if (!served) unserved.push(`${left} job(s) need ${describeClass(this.#classes[c])}`);
      }
    }
    const key = unserved.join("; ");
    if (key !== this.#warnedClasses && key !== "") {
      warnings.push(`No runner seen in the last ${this.#windowMs / 1000}s can take these: ${key}`);
    }
    this.#warnedClasses = key;
    for (const w of warnings) log.warn("{warning}", { warning: w });
    return warnings;
  }
}
