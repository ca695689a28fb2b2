/**
 * Gangs: a gang job (a task for K nodes) is handed to K nodes, one rank
 * each; each stages it and reports ready; all K are started together. This
 * part keeps the gangs that are out and the ones still gathering members.
 *
 * @module
 */

import type { RunnerLink } from "./runner_link.ts";

/** One gang job that is out: its members, in rank order, and those ready to start. */
export interface Gang {
  /** The job. */
  readonly job: number;
  /** Members it needs. */
  readonly size: number;
  /** Its job class. */
  readonly cls: number;
  /** Its members so far; rank `i + 1` is `members[i]`. */
  readonly members: readonly RunnerLink[];
}

interface GangState extends Gang {
  readonly members: RunnerLink[];
  readonly ready: Set<RunnerLink>;
}

/**
 * The gang jobs that are out, by job.
 *
 * @example
 * ```ts
 * import { Gangs } from "./gangs.ts";
 * const gangs = new Gangs();
 * const a = { host: "a", peer: "a:1", accepts: () => true, assign() {}, release() {}, refuse() {} };
 * const b = { ...a, host: "b" };
 * const gang = gangs.open(7, 2, 0);
 * gangs.join(gang, a);
 * gangs.join(gang, b);
 * console.assert(gangs.gathering().length === 0);
 * console.assert(gangs.ready(7, a) === undefined && gangs.ready(7, b)?.length === 2);
 * ```
 */
export class Gangs {
  readonly #byJob = new Map<number, GangState>();
  /** Gangs still short of members, oldest first. */
  readonly #gathering: GangState[] = [];

  /** Opens a gang for `job`, which needs `size` members of class `cls`. */
  open(job: number, size: number, cls: number): Gang {
    const gang: GangState = { job, size, cls, members: [], ready: new Set() };
    this.#byJob.set(job, gang);
    this.#gathering.push(gang);
    return gang;
  }

  /** Whether `job` is a gang job that is out. */
  has(job: number): boolean {
    return this.#byJob.has(job);
  }

  /** The members of the gang running `job`, if it is one. */
  membersOf(job: number): readonly RunnerLink[] | undefined {
    return this.#byJob.get(job)?.members;
  }

  /** Gangs still short of members, oldest first. */
  gathering(): readonly Gang[] {
    return this.#gathering;
  }

  /** Whether `gang` is still short of members. */
  isGathering(gang: Gang): boolean {
    return this.#gathering.includes(gang as GangState);
  }

  /** Adds `link` to `gang`; returns its rank (from 1). A gang with all its members stops gathering. */
  join(gang: Gang, link: RunnerLink): number {
    const g = gang as GangState;
    g.members.push(link);
    if (g.members.length === g.size) this.#gathering.splice(this.#gathering.indexOf(g), 1);
    return g.members.length;
  }

  /** `link` has staged `job`; returns every member once all are ready, else undefined. */
  ready(job: number, link: RunnerLink): readonly RunnerLink[] | undefined {
    const gang = this.#byJob.get(job);
    if (gang === undefined) return undefined;
    gang.ready.add(link);
    return gang.ready.size === gang.size ? gang.members : undefined;
  }

  /** Forgets the gang running `job` (settled, retried or abandoned); returns it, if there was one. */
  close(job: number): Gang | undefined {
    const gang = this.#byJob.get(job);
    if (gang === undefined) return undefined;
    this.#byJob.delete(job);
    const at = this.#gathering.indexOf(gang);
    if (at !== -1) this.#gathering.splice(at, 1);
    return gang;
  }
}
