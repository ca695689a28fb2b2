/**
 * The runner's side of the binary protocol (the draft's "node"): one session
 * carries one task. Its states are the draft's node statuses:
 *
 * Joining → Idle → WaitingForInput → ReadyToStart → Working → Finished →
 * Leaving, answering Status in every state with the current value.
 *
 * Files stream to disk inside a fresh task directory; names that would leave
 * it are rejected with a reason. After Start the runs execute in the
 * background while the session keeps reading (Status, Stop, Disconnect).
 *
 * Runs start through runner/exec/process_runner.ts as text jobs do
 * (`posix_spawn` where it can be used, else `Deno.Command`), each writing
 * its log itself (the log opened before any run, shared by the runs that
 * name it), under the one `--max-output` rule of runner/exec/output_limit.ts
 * (a log may not grow past it). Each run gets `VICO_SLOT`: the task's slot,
 * the lowest number from 1 that no other task running under the same work
 * directory holds (a runner's N node sessions share one: 1..N, as a text
 * runner's worker slots). The draft's binary protocol carries no sequence
 * number: a run gets `VICO_SEQ` from the ` seq=<n>` field of the task key
 * a vico manager stages (`.vico/task`) for a node that spoke the extension
 * (`--persist` or a secret); under a plain owner runs have no `VICO_SEQ`.
 *
 * @module
 */

import { awakeInterval } from "../../util/awake_interval.ts";
import type { BufferedReader } from "../../protocol/buffered_reader.ts";
import { encodeFromNode, MAX_FRAME_PAYLOAD, readToNode } from "../../protocol/binary_codec.ts";
import { ProtocolError, VicoError } from "../../core/errors.ts";
import type { Limits } from "../../core/limits.ts";
import {
  BINARY_PROTOCOL_VERSION,
  type FromNode,
  NO_MORE_TASKS,
  NodeStatus,
  type NodeStatusValue,
  type ToNode,
} from "../../protocol/messages.ts";
import type { Transport } from "../../transport/transport.ts";
import { logger } from "../../util/log.ts";
import { Mutex } from "../../util/mutex.ts";
import { writeAll } from "../../io/write_all.ts";
import {
  type JobLedger,
  programArgv,
  runProcess,
  SEQ_VARIABLE,
  SLOT_VARIABLE,
  STATUS_RUNNER_FAILURE,
} from "../exec/process_runner.ts";
import { OutputLimitError } from "../exec/output_limit.ts";
import type { RunAs } from "../exec/run_as.ts";
import type { JobCgroups } from "../exec/job_cgroup.ts";
import { TaskDir, TaskPathError } from "./task_dir.ts";
import { splitJobSeq, TASK_KEY_FILE } from "../../protocol/vico_extension.ts";
import { quoteName } from "../../protocol/task_path.ts";
import type { BinaryState } from "../../protocol/messages.ts";
import { copyExact } from "../../io/copy_exact.ts";

/** A node session's state: the draft's binary states ({@linkcode BinaryState}). */
export type NodeState = BinaryState;

/** The Status value each state reports. */
export const STATUS_OF_STATE: Readonly<Record<NodeState, NodeStatusValue>> = Object.freeze({
  Joining: NodeStatus.IDLE,
  Idle: NodeStatus.IDLE,
  WaitingForInput: NodeStatus.WAITING_FOR_INPUT,
  ReadyToStart: NodeStatus.READY_TO_START,
  Working: NodeStatus.WORKING,
  Finished: NodeStatus.FINISHED,
  Leaving: NodeStatus.FINISHED,
  Closed: NodeStatus.FINISHED,
});

/**
 * A task a persistent node kept when its owner was lost in the middle of it:
 * the run goes on, and a later session delivers it.
 */
export interface HeldTask {
  /** The task's key, as the owner staged it in `.vico/task`. */
  readonly key: string;
  /** Its directory. */
  readonly dir: TaskDir;
  /** Files to return, in Ret order. */
  readonly rets: readonly string[];
  /** Settles with the last run's status once the runs are over (logs closed). */
  readonly done: Promise<number>;
}

/** How a node session ended. */
export type NodeSessionEnd =
  /** Persist: the owner was lost mid-task; the run goes on as a held task. */
  | { readonly kind: "detached"; readonly held: HeldTask }
  | { readonly kind: "done"; readonly status: number }
  | { readonly kind: "noMoreTasks" }
  /** The connection ended (closed or reset) before the Join was answered. */
  | { readonly kind: "ownerGone"; readonly reason: string }
  | { readonly kind: "refused"; readonly reason: string }
  | { readonly kind: "failed"; readonly reason: string };

/** Options for {@linkcode NodeSession}. */
export interface NodeSessionOptions {
  /** Modules announced in Join. */
  modules: readonly string[];
  /** Where task directories are made. */
  workDir: string;
  /** Keep the task directory after the session (debugging). */
  keepTaskDirs?: boolean;
  /** Grace between SIGTERM and SIGKILL on Stop. @default {2000} */
  killGraceMs?: number;
  /** Wire limits. */
  limits: Limits;
  /** Where running programs are written down (`--persist`: see runner/exec/job_reaper.ts). */
  ledger?: JobLedger;
  /** Starts a run's process (tests inject a stand-in). @default {runProcess} */
  run?: typeof runProcess;
  /** Keep a started task going when the owner is lost (the owner must have staged its key). */
  persist?: boolean;
  /** Deliver this held task instead of taking a new one. */
  resume?: HeldTask;
  /** An owner silent this long is taken for lost (it probes every pulse; bytes of a File or Result count). */
  ownerSilenceMs?: number;
  /** Run programs as this user, who owns the task directory (`--user`). */
  runAs?: RunAs;
  /** Run each program in a cgroup leaf with the runner's per-job limits. */
  cgroups?: JobCgroups;
}

interface Run {
  program: string;
  log: string;
}

const log = logger("runner");

/** The slots held by running tasks, by work directory (see the module doc). */
const slotsInUse = new Map<string, Set<number>>();

function takeSlot(workDir: string): number {
  let used = slotsInUse.get(workDir);
  if (used === undefined) slotsInUse.set(workDir, used = new Set());
  let slot = 1;
  while (used.has(slot)) slot++;
  used.add(slot);
  return slot;
}

function releaseSlot(workDir: string, slot: number): void {
  const used = slotsInUse.get(workDir);
  used?.delete(slot);
  if (used?.size === 0) slotsInUse.delete(workDir);
}

/** One task, from Join to Leave. */
export class NodeSession {
  readonly #transport: Transport;
  readonly #reader: BufferedReader;
  readonly #options: NodeSessionOptions;
  readonly #writeLock = new Mutex();
  readonly #stop = new AbortController();
  #state: NodeState = "Joining";
  #task: TaskDir | undefined;
  readonly #staged = new Set<string>();
  readonly #runs: Run[] = [];
  readonly #rets: string[] = [];
  #logs = new Map<string, Deno.FsFile>();
  #running: Promise<void> | undefined;
  #status = 0;
  /** Settles with the runs' last status. */
  #done: Promise<number> | undefined;
  #key: string | undefined;
  #detached = false;
  #lastHeard = performance.now();
  /** From the task key's `seq=`, if the owner sent one. */
  #seq: number | undefined;

  /**
   * @param transport Connection to the owner.
   * @param reader Reader over it.
   * @param options Modules, work directory, limits.
   */
  constructor(transport: Transport, reader: BufferedReader, options: NodeSessionOptions) {
    this.#transport = transport;
    this.#reader = reader;
    this.#options = options;
  }

  /** Current state. */
  get state(): NodeState {
    return this.#state;
  }

  /** Ends the session now: the running program is stopped, the task directory removed. */
  abort(): void {
    this.#stop.abort();
    this.#transport.close();
  }

  /** Runs the session to its end. Never rejects. */
  async run(): Promise<NodeSessionEnd> {
    const silence = this.#options.ownerSilenceMs;
    // A late tick (this node was paused) counts as a sign of life: the owner's frames of that time wait unread.
    const stopWatchdog = silence === undefined ? undefined : awakeInterval(Math.max(50, silence / 4), () => {
      if (performance.now() - this.#lastHeard > silence) this.#transport.close();
    }, () => (this.#lastHeard = performance.now()));
    try {
      await this.#send({ kind: "join", version: BINARY_PROTOCOL_VERSION, modules: this.#options.modules });
      while (true) {
        const frame = await readToNode(this.#reader, this.#options.limits);
        this.#lastHeard = performance.now();
        if (frame === null) {
          throw new VicoError("CONNECTION_CLOSED", `Owner closed the connection in state ${this.#state}`);
        }
        const end = await this.#handle(frame);
        if (end !== undefined) return end;
      }
    } catch (err) {
      const reason = err instanceof Error ? err.message : String(err);
      // Closed or reset before the Join was answered: the owner is gone (its
      // run ended, or it died); the caller decides what that means.
      if (this.#state === "Joining" && !(err instanceof ProtocolError)) return { kind: "ownerGone", reason };
      // Persist: the owner was lost mid-task; the run goes on and is held.
      const held = this.#detach(err);
      if (held !== undefined) return { kind: "detached", held };
      if (err instanceof ProtocolError) {
        await this.#send({ kind: "disconnect", reason }).catch(() => {});
      }
      return { kind: "failed", reason };
    } finally {
      stopWatchdog?.();
      this.#state = "Closed";
      this.#transport.close();
      // A detached task's run, logs and directory belong to the held task.
      if (!this.#detached) {
        this.#stop.abort();
        await this.#running?.catch(() => {});
        for (const file of this.#logs.values()) file.close();
        this.#logs.clear();
        if (this.#task !== undefined && !this.#options.keepTaskDirs) await this.#task.remove();
      }
    }
  }

  async #handle(frame: ToNode): Promise<NodeSessionEnd | undefined> {
    if (frame.kind === "statusRequest") {
      await this.#send({ kind: "status", value: STATUS_OF_STATE[this.#state] });
      return;
    }
    if (frame.kind === "disconnect") {
      // Nothing staged yet (answering the Join, or right after Accept): the owner's run is over.
      if ((this.#state === "Joining" || this.#state === "Idle") && frame.reason === NO_MORE_TASKS) {
        return { kind: "noMoreTasks" };
      }
      return { kind: "failed", reason: `Owner disconnected in state ${this.#state}: ${frame.reason}` };
    }
    switch (this.#state) {
      case "Joining":
        if (frame.kind === "accept" && this.#options.resume !== undefined) {
          this.#resume(this.#options.resume);
          return;
        }
        if (frame.kind === "accept") {
          this.#task = await TaskDir.create(this.#options.workDir, this.#options.runAs);
          this.#state = "Idle";
          return;
        }
        if (frame.kind === "reject") return { kind: "refused", reason: frame.reason };
        break;
      case "Idle":
      case "WaitingForInput":
        switch (frame.kind) {
          case "file":
            this.#state = "WaitingForInput";
            await this.#receiveFile(frame.name, frame.size);
            return;
          case "run":
            this.#state = "WaitingForInput";
            await this.#reply(this.#acceptRun(frame.program, frame.log));
            return;
          case "ret":
            this.#state = "WaitingForInput";
            await this.#reply(this.#acceptRet(frame.name));
            return;
          case "wait":
            this.#state = "ReadyToStart";
            return;
          case "start":
            await this.#send({ kind: "reject", reason: "not ready to start: no Wait received" });
            return;
          case "stop":
            await this.#send({ kind: "reject", reason: "nothing is running" });
            return;
        }
        break;
      case "ReadyToStart":
        if (frame.kind === "start") {
          await this.#start();
          return;
        }
        if (frame.kind === "stop") {
          await this.#send({ kind: "reject", reason: "nothing is running" });
          return;
        }
        break;
      case "Working":
        if (frame.kind === "stop") {
          // Answer first, then end the run; Finished follows as usual.
          await this.#send({ kind: "accept" });
          this.#stop.abort();
          return;
        }
        break;
      case "Finished":
        if (frame.kind === "accept") {
          await this.#sendResults();
          this.#state = "Leaving";
          await this.#send({ kind: "leave" });
          return;
        }
        if (frame.kind === "stop") {
          await this.#send({ kind: "reject", reason: "the run has finished" });
          return;
        }
        break;
      case "Leaving":
        if (frame.kind === "accept") return { kind: "done", status: this.#status };
        break;
    }
    throw new ProtocolError(`Frame ${frame.kind} is not valid in state ${this.#state}`);
  }

  async #receiveFile(name: string, size: number): Promise<void> {
    let file: Deno.FsFile | undefined;
    let reason: string | undefined;
    try {
      file = await this.#task!.openForWriting(name);
    } catch (err) {
      reason = err instanceof TaskPathError ? err.message : `cannot write ${quoteName(name)}: ${err}`;
    }
    // The payload is on the wire either way: store it, or read past it.
    let writeError: string | undefined;
    await this.#reader.pipeExact(size, async (chunk) => {
      this.#lastHeard = performance.now(); // a File's bytes are the owner's sign of life
      if (file === undefined || writeError !== undefined) return;
      try {
        await writeAll(file, chunk);
      } catch (err) {
        writeError = `cannot write ${quoteName(name)}: ${(err as Error).message}`;
      }
    });
    file?.close();
    reason ??= writeError;
    if (reason === undefined) this.#staged.add(name);
    await this.#reply(reason);
  }

  #acceptRun(program: string, logName: string): string | undefined {
    try {
      this.#task!.resolve(program);
      this.#task!.resolve(logName);
    } catch (err) {
      return (err as Error).message;
    }
    if (!this.#staged.has(program)) {
      return `program ${JSON.stringify(program)} was not staged with File in this session`;
    }
    if (this.#staged.has(logName)) return `log ${JSON.stringify(logName)} would overwrite a staged file`;
    this.#runs.push({ program, log: logName });
    return undefined;
  }

  #acceptRet(name: string): string | undefined {
    try {
      this.#task!.resolve(name);
    } catch (err) {
      return (err as Error).message;
    }
    this.#rets.push(name);
    return undefined;
  }

  async #start(): Promise<void> {
    // Logs are opened before any program of this task runs, so a run cannot
    // plant a link where a later log goes.
    try {
      for (const run of this.#runs) {
        if (!this.#logs.has(run.log)) this.#logs.set(run.log, await this.#task!.openForWriting(run.log));
        await this.#task!.makeExecutable(run.program);
      }
    } catch (err) {
      await this.#send({ kind: "reject", reason: `cannot start: ${(err as Error).message}` });
      return;
    }
    const key = await this.#readKey();
    this.#seq = key?.seq;
    if (this.#options.persist) this.#key = key?.tag;
    this.#state = "Working";
    await this.#send({ kind: "started", time: new Date().toISOString() });
    const slot = takeSlot(this.#options.workDir);
    this.#done = this.#execute(slot);
    this.#done.finally(() => releaseSlot(this.#options.workDir, slot)).catch(() => {});
    this.#report(this.#done);
  }

  /** When the runs are over: Finished, if the session is still with its owner. */
  #report(done: Promise<number>): void {
    this.#running = done.then(async (status) => {
      this.#status = status;
      if (this.#state !== "Working" || this.#detached) return;
      this.#state = "Finished";
      await this.#send({ kind: "finished", status });
    });
    this.#running.catch((err) => {
      log.warn("Could not report the end of a task: {reason}", { reason: (err as Error).message });
      this.#transport.close();
    });
  }

  /** Delivers a held task: Working or Finished at once, then as usual. */
  #resume(held: HeldTask): void {
    this.#task = held.dir;
    this.#rets.push(...held.rets);
    this.#key = held.key;
    this.#state = "Working";
    this.#done = held.done;
    this.#report(held.done);
  }

  /** The key the owner staged, if it did (an identified node's task), and its `seq=`, if any. */
  async #readKey(): Promise<{ tag: string; seq?: number } | undefined> {
    const opened = await this.#task!.openForReading(TASK_KEY_FILE);
    if (opened === undefined) return undefined;
    try {
      const bytes = new Uint8Array(Math.min(opened.size, 256));
      const n = await opened.file.read(bytes);
      const text = new TextDecoder().decode(bytes.subarray(0, n ?? 0)).trim();
      return text === "" ? undefined : splitJobSeq(text);
    } finally {
      opened.file.close();
    }
  }

  /** Persist: on a lost connection in the middle of a task, keeps it going. */
  #detach(err: unknown): HeldTask | undefined {
    // A Disconnect from the owner is an end (`#handle` returns it), never thrown:
    // whatever was thrown and is not the wire's fault lost the connection.
    const lostConnection = !(err instanceof ProtocolError);
    if (!this.#options.persist || this.#key === undefined || !lostConnection) return undefined;
    if (this.#state !== "Working" && this.#state !== "Finished") return undefined;
    this.#detached = true;
    return this.#held();
  }

  #held(): HeldTask {
    const logs = [...this.#logs.values()];
    this.#logs = new Map();
    return {
      key: this.#key!,
      dir: this.#task!,
      rets: [...this.#rets],
      done: this.#done!.then((status) => {
        for (const file of logs) file.close();
        return status;
      }),
    };
  }

  /**
   * Runs the programs in order; the first non-zero status stops the rest. A
   * log may grow up to the output limit; a run that writes more is killed
   * with status 125, its log cut there and ended with the limit's note.
   */
  async #execute(slot: number): Promise<number> {
    let status = 0;
    const max = this.#options.limits.maxOutputBytes;
    const env = {
      [SLOT_VARIABLE]: String(slot),
      ...(this.#seq === undefined ? {} : { [SEQ_VARIABLE]: String(this.#seq) }),
    };
    for (const run of this.#runs) {
      if (this.#stop.signal.aborted) break;
      const argv = programArgv(this.#task!.resolve(run.program), await this.#task!.hasShebang(run.program));
      try {
        const outcome = await (this.#options.run ?? runProcess)(argv, {
          cwd: this.#task!.path,
          env,
          stderrOnStdout: true,
          // The log opened before any run: the run writes that very file, whatever is at its name now.
          outputFile: this.#logs.get(run.log)!,
          maxOutputBytes: max,
          signal: this.#stop.signal,
          killGraceMs: this.#options.killGraceMs,
          runAs: this.#options.runAs,
          cgroups: this.#options.cgroups,
          ledger: this.#options.ledger,
        });
        if (outcome.memoryExceeded) {
          log.warn("A run of this task was {note}", { note: this.#options.cgroups!.memoryNote });
        }
        status = outcome.status;
      } catch (err) {
        if (!(err instanceof OutputLimitError)) throw err;
        log.warn("A run of this task wrote over {max} bytes to its log: killed", { max });
        status = STATUS_RUNNER_FAILURE;
      }
      if (status !== 0) break;
    }
    return status;
  }

  async #sendResults(): Promise<void> {
    for (const file of this.#logs.values()) file.close();
    this.#logs.clear();
    const limit = Math.min(this.#options.limits.maxFileBytes, MAX_FRAME_PAYLOAD);
    for (const name of this.#rets) {
      const opened = await this.#task!.openForReading(name);
      if (opened !== undefined && opened.size > limit) {
        log.warn("Returned file {name} has {size} bytes, over the limit of {limit}: sent as missing", {
          name,
          size: opened.size,
          limit,
        });
        opened.file.close();
        await this.#send({ kind: "result", size: 0, missing: true });
        continue;
      }
      if (opened === undefined) {
        await this.#send({ kind: "result", size: 0, missing: true });
        continue;
      }
      try {
        // The whole frame goes out under one lock: no Status reply inside it.
        await this.#writeLock.run(async () => {
          await this.#transport.write(encodeFromNode({ kind: "result", size: opened.size, missing: false }));
          await copyExact(opened.file, opened.size, async (chunk) => {
            await this.#transport.write(chunk);
            this.#lastHeard = performance.now(); // an owner taking a Result's bytes is alive
          }, { shortMessage: `${name} shrank while being sent` });
        });
      } finally {
        opened.file.close();
      }
    }
  }

  #reply(reason: string | undefined): Promise<void> {
    return this.#send(reason === undefined ? { kind: "accept" } : { kind: "reject", reason });
  }

  #send(msg: FromNode): Promise<void> {
    return this.#writeLock.run(() => this.#transport.write(encodeFromNode(msg)));
  }
}
