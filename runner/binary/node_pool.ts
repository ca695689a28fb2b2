/**
 * The binary protocol's side of a runner: N node sessions, one task each,
 * joining again after each; with `persist`, the tasks kept across a lost
 * owner (held tasks) until a later session delivers them. What follows each
 * session's outcome is the reconnect policy's
 * (`runner/connect/reconnect_policy.ts`).
 *
 * @module
 */

import { join } from "node:path";
import type { Limits } from "../../core/limits.ts";
import { BufferedReader } from "../../protocol/buffered_reader.ts";
import { HELD_TASK_PREFIX, isAuthRefusal, RUNNER_SILENT_PULSES } from "../../protocol/vico_extension.ts";
import { logger } from "../../util/log.ts";
import { cannotMake, tempDirOverride } from "../../io/owned_temp_dir.ts";
import { sayHello } from "../connect/extension_hello.ts";
import type { ManagerLink } from "../connect/manager_link.ts";
import type { Happened } from "../connect/reconnect.ts";
import type { LifeLedger, RunnerState } from "../service/runner_state.ts";
import type { PoolState, RunnerEnd, RunnerOptions } from "../runner_options.ts";
import { type HeldTask, NodeSession } from "./node_session.ts";
import { TaskDir } from "./task_dir.ts";

const log = logger("runner");

/**
 * A binary runner's node sessions and held tasks.
 *
 * @example
 * ```ts ignore
 * const link = new ManagerLink({ hostname: "127.0.0.1", port: 7707 });
 * const end = await new NodePool({ hostname: "127.0.0.1", port: 7707, workers: 2 }, limits, link).run({});
 * ```
 */
/**
 * Makes a node's work directory in the system's temporary directory
 * (`vico-node-*`: not swept, unlike an `OwnedTempDir`: tasks may mount into it).
 *
 * @throws {Error} Naming the directory (and `TMPDIR`) when it cannot be made.
 */
export async function makeNodeWorkDir(): Promise<string> {
  try {
    const dir = tempDirOverride();
    return await Deno.makeTempDir({ prefix: "vico-node-", ...(dir === undefined ? {} : { dir }) });
  } catch (err) {
    throw new Error(cannotMake(undefined, err), { cause: err });
  }
}

export class NodePool {
  readonly #options: RunnerOptions;
  readonly #limits: Limits;
  readonly #link: ManagerLink;
  readonly #nodeSessions = new Set<NodeSession>();
  /** Persist: tasks kept across a lost owner, and whether each has finished or is being delivered. */
  readonly #heldTasks = new Map<HeldTask, { finished: boolean; claimed: boolean }>();
  #jobsDone = 0;
  /** Where running programs are written down (`--persist`). */
  #ledger: LifeLedger | undefined;

  /**
   * @param options The runner's options.
   * @param limits Its wire limits.
   * @param link Its way to the manager (and its stop).
   */
  constructor(options: RunnerOptions, limits: Limits, link: ManagerLink) {
    this.#options = options;
    this.#limits = limits;
    this.#link = link;
  }

  /** Tasks running now, including held ones that have not finished. */
  get running(): number {
    let running = 0;
    for (const s of this.#nodeSessions) if (!["Joining", "Idle", "Closed"].includes(s.state)) running++;
    for (const entry of this.#heldTasks.values()) if (!entry.finished) running++;
    return running;
  }

  /** Tasks reported to an owner since the start. */
  get done(): number {
    return this.#jobsDone;
  }

  /** Sessions waiting for a task have nothing to finish: they end (the link is already stopping). */
  stop(): void {
    for (const session of this.#nodeSessions) if (session.state === "Joining") session.abort();
  }

  /** Ends every session now. */
  abort(_reason: string): void {
    for (const session of this.#nodeSessions) session.abort();
  }

  /** N node sessions, each one task at a time, joining again after each. Never rejects. */
  async run({ state, ledger }: PoolState): Promise<RunnerEnd> {
    this.#ledger = ledger;
    let workDir: string;
    try {
      // A persistent node's task directories must outlive the process.
      workDir = this.#options.workDir ?? (state ? join(state.dir, "work") : await makeNodeWorkDir());
    } catch (err) {
      return { kind: "cannot-start", reason: `Cannot prepare the node: ${(err as Error).message}` };
    }
    for (const kept of state ? await state.heldTasks() : []) {
      this.#heldTasks.set({
        key: kept.key,
        rets: kept.rets,
        dir: TaskDir.existing(kept.dir, this.#options.runAs),
        done: Promise.resolve(kept.status),
      }, { finished: true, claimed: false });
    }
    try {
      const ends = await Promise.all(
        Array.from({ length: this.#options.workers }, (_, i) => this.#nodeLoop(i + 1, workDir, state)),
      );
      const jobs = this.#jobsDone;
      const untrusted = ends.find((e) => e.kind === "untrusted");
      if (untrusted !== undefined) return untrusted;
      const failed = ends.find((e) => e.kind === "failed");
      if (failed !== undefined) return { ...failed, jobs } as RunnerEnd;
      // A Reject after this node did work means nothing is left that it can
      // take (the rest needs other modules): a normal end. A Reject before
      // any task means it could never work here.
      const refused = ends.find((e) => e.kind === "refused");
      if (refused !== undefined && jobs === 0) return refused;
      if (refused !== undefined) log.info("{reason}", { reason: refused.reason });
      return { kind: ends.some((e) => e.kind === "stopped") ? "stopped" : "finished", jobs };
    } finally {
      if (this.#options.workDir === undefined && state === undefined && !this.#options.keepTaskDirs) {
        await Deno.remove(workDir, { recursive: true }).catch(() => {});
      }
    }
  }

  /** Persist: keeps a task whose owner was lost; once it finishes, records it for delivery. */
  #hold(held: HeldTask, state: RunnerState): void {
    const entry = { finished: false, claimed: false };
    this.#heldTasks.set(held, entry);
    held.done.then(async (status) => {
      entry.finished = true;
      if (!this.#heldTasks.has(held)) return;
      await state.keepTask({ key: held.key, status, rets: [...held.rets], dir: held.dir.path });
      log.info("Kept the results of task {key} until a manager takes them", { key: held.key });
    }).catch((err) => log.error("Could not keep a held task: {err}", { err: (err as Error).message }));
  }

  /** A held task nobody is delivering, finished ones first. */
  #claimHeld(): HeldTask | undefined {
    let pick: HeldTask | undefined;
    for (const [held, entry] of this.#heldTasks) {
      if (entry.claimed) continue;
      if (pick === undefined || entry.finished) pick = held;
      if (entry.finished) break;
    }
    if (pick !== undefined) this.#heldTasks.get(pick)!.claimed = true;
    return pick;
  }

  /** A held task was delivered, or the manager does not want it: forget it. */
  async #forget(held: HeldTask, state: RunnerState, removeDir: boolean): Promise<void> {
    this.#heldTasks.delete(held);
    await state.forgetTask(held.key);
    if (removeDir) await held.done.then(() => held.dir.remove(), () => held.dir.remove());
  }

  /** One node: sessions one after another, until the reconnect policy ends it. */
  async #nodeLoop(id: number, workDir: string, state: RunnerState | undefined): Promise<RunnerEnd> {
    const persist = this.#options.persist ?? false;
    let tasks = 0;
    const reconnect = this.#link.reconnect({ prefix: `Node ${id}: `, persist, jobs: () => tasks });
    // The extension carries identity and held tasks (persist) and authentication (secret).
    const loop = { extension: (persist || this.#options.secret !== undefined) && (this.#options.extension ?? true) };
    while (!this.#link.stopping) {
      const happened = await this.#sessionOnce(id, workDir, state, loop);
      if (happened.outcome === "taskDone") tasks++;
      const end = await reconnect.after(happened);
      if (end !== undefined) return end;
    }
    return { kind: "stopped", jobs: tasks };
  }

  /**
   * One connection and its node session (or the failure of its opening):
   * how it came out. `loop.extension` turns off for a manager without it.
   */
  async #sessionOnce(
    id: number,
    workDir: string,
    state: RunnerState | undefined,
    loop: { extension: boolean },
  ): Promise<Happened> {
    const persist = this.#options.persist ?? false;
    const dialed = await this.#link.dial();
    if (!("transport" in dialed)) return dialed;
    const transport = dialed.transport;
    const reader = new BufferedReader(transport, { maxLineBytes: this.#limits.maxLineBytes });
    let held = state ? this.#claimHeld() : undefined;
    let resume: HeldTask | undefined;
    let ownerSilenceMs: number | undefined;
    if (loop.extension) {
      // A persistent node says who it is and which task it still holds; a
      // node with a secret authenticates. (A Join may then wait for a task
      // as long as the owner has none: only the hello has a time limit.)
      const opening = this.#link.opening(transport);
      const hello = await sayHello(transport, reader, {
        proto: "binary",
        id: state?.id,
        holds: held === undefined ? [] : [HELD_TASK_PREFIX + held.key],
        secret: this.#options.secret,
        manager: this.#link.manager,
      });
      opening.done();
      const cut = opening.cut;
      if (cut !== undefined) {
        if (held) this.#heldTasks.get(held)!.claimed = false;
        return { outcome: cut.stopped ? "openingStopped" : "handshakeTimeout", reason: cut.reason };
      }
      if (hello.kind !== "ok") {
        if (held) this.#heldTasks.get(held)!.claimed = false;
        transport.close();
      }
      switch (hello.kind) {
        case "noExtension":
          log.info("Node {id}: the manager does not speak the vico extension; a held task cannot be delivered", { id });
          loop.extension = false;
          return { outcome: "noExtension" };
        case "refused":
          return { outcome: "helloRefused", reason: `Manager refused this node: ${hello.reason}`, auth: hello.auth };
        case "untrusted":
          return { outcome: "AUTH_FAILED", reason: hello.reason };
        case "closed":
          return { outcome: "closedSilently", reason: hello.reason };
        case "failed":
          return { outcome: "openingFailed", reason: hello.reason };
      }
      const answer = hello.answer;
      ownerSilenceMs = answer.pulse ? answer.pulse * RUNNER_SILENT_PULSES * 1000 : undefined;
      if (held !== undefined && answer.resume === 1) resume = held;
      else if (held !== undefined) {
        log.info("The manager no longer needs task {key}; dropping it", { key: held.key });
        await this.#forget(held, state!, true);
        held = undefined;
      }
    }
    this.#link.connection(true);
    const session = new NodeSession(transport, reader, {
      modules: this.#options.modules ?? [],
      workDir,
      keepTaskDirs: this.#options.keepTaskDirs,
      killGraceMs: this.#options.killGraceMs,
      limits: this.#limits,
      persist,
      resume,
      ownerSilenceMs,
      runAs: this.#options.runAs,
      cgroups: this.#options.jobCgroups,
      ledger: this.#ledger,
    });
    this.#nodeSessions.add(session);
    const end = await session.run();
    this.#nodeSessions.delete(session);
    if (resume !== undefined) {
      // Lost again mid-delivery, it is held again below (its directory
      // stays). Any other end is its last: the session has removed its
      // directory, so its record goes too (left, it would be announced at
      // every start, naming a directory that no longer exists).
      if (end.kind === "detached") this.#heldTasks.delete(resume);
      else await this.#forget(resume, state!, false);
    }
    switch (end.kind) {
      case "detached":
        this.#hold(end.held, state!);
        return { outcome: "detached", reason: `Lost the manager in the middle of task ${end.held.key}; it runs on` };
      case "done":
        this.#jobsDone++;
        log.debug("Node {id} finished a task with status {status}", { id, status: end.status });
        return { outcome: "taskDone" };
      case "noMoreTasks":
        return { outcome: "noMoreTasks" };
      case "refused":
        return {
          outcome: "rejected",
          reason: `Manager refused this node: ${end.reason}`,
          retryReason: `Refused: ${end.reason}`,
          auth: isAuthRefusal(end.reason),
        };
      case "ownerGone":
        // As with a closed port: after tasks, the owner's run is over.
        return {
          outcome: "ownerGone",
          reason: `Manager closed the connection before answering Join: ${end.reason}`,
          retryReason: `Lost the manager: ${end.reason}`,
        };
      case "failed":
        return { outcome: "sessionFailed", reason: end.reason, retryReason: `Lost the manager: ${end.reason}` };
    }
  }
}
