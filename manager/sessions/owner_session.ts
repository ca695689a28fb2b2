/**
 * The manager's side of one binary-protocol connection (the draft's
 * "owner"). Its states follow the node's statuses:
 *
 * Joining → Idle → WaitingForInput (staging files and controls) →
 * ReadyToStart (after Wait; gang members are held here until all are ready)
 * → Working (after Start) → Finished (receiving results) → Leaving → Closed.
 *
 * One session carries one task. A session that fails (protocol error, lost
 * node, a node that rejects part of its task) gives its task back to the
 * scheduler and never throws to its caller.
 *
 * @module
 */

import type { BufferedReader } from "../../protocol/buffered_reader.ts";
import { encodeToNode, isAcceptedBinaryVersion, readFromNode } from "../../protocol/binary_codec.ts";
import { ProtocolError, VicoError } from "../../core/errors.ts";
import { type FromNode, NO_MORE_TASKS, NodeStatus, type ToNode } from "../../protocol/messages.ts";
import { formatTag, SEQ_FIELD, TASK_KEY_FILE } from "../../protocol/vico_extension.ts";
import type { Transport } from "../../transport/transport.ts";
import { logger } from "../../util/log.ts";
import { Mutex } from "../../util/mutex.ts";
import { type JobClass, taskOf } from "../jobs/job_list.ts";
import type { ReturnedFile, StagedOutput } from "../results/results_store.ts";
import type { RunnerLink } from "../scheduling/scheduler.ts";
import type { Extension, HandshakeWindow, Session, SessionContext } from "./session_context.ts";
import { FailureReporter } from "./failure_reporter.ts";
import { SILENT_PULSES } from "./liveness.ts";
import { SessionKit } from "./session_kit.ts";
import { watchTransfer } from "./watch_transfer.ts";
import type { TaskBundle } from "../jobs/task_bundle.ts";
import { copyExact } from "../../io/copy_exact.ts";
import type { BinaryState } from "../../protocol/messages.ts";

/** An owner session's state: the draft's binary states ({@linkcode BinaryState}). */
export type OwnerState = BinaryState;

/** What an owner session needs from the manager around it. */
export interface OwnerSessionContext extends SessionContext {
  /**
   * How often a node is sent Status; {@linkcode SILENT_PULSES} silent
   * intervals drop it (0: never). A File or Result that moves no byte for
   * `transferIdleTimeoutMs` drops it too.
   */
  readonly pulseMs: number;
  /** Time limit for tasks that set none. */
  readonly defaultTimeoutMs?: number;
}

type Assignment =
  | { kind: "task"; job: number; rank: number; attempt: number }
  | { kind: "release" }
  | { kind: "refuse"; reason: string };

/** The liveness threshold (`liveness.ts`), as the owner applies it: silent pulses in {@linkcode WATCHED_STATES}. */
export { SILENT_PULSES };

/** States in which the node answers Status at once (the draft allows Status in any state). */
const ANSWERING_STATES: readonly OwnerState[] = ["Joining", "Idle", "WaitingForInput", "ReadyToStart", "Working"];

/**
 * States in which a node silent for {@linkcode SILENT_PULSES} pulses is
 * dropped: the answering ones, and Finished, where the node owes its Results
 * and Leave. Not Leaving: there the owner, recording, has the next word.
 */
const WATCHED_STATES: ReadonlySet<OwnerState> = new Set([...ANSWERING_STATES, "Finished"]);

/**
 * States in which the node is sent Status every pulse: the answering ones,
 * and Leaving, so that a node whose owner takes long to record (a gang member
 * waiting for the others) does not take its owner for lost. Not Finished: the
 * node would answer only after its Results and Leave.
 */
const PROBED_STATES: ReadonlySet<OwnerState> = new Set([...ANSWERING_STATES, "Leaving"]);

/** Bytes read from an input and written per chunk while staging a File. */
const CHUNK_BYTES = 1 << 20;

const log = logger("manager");
const failures = new FailureReporter({
  counts: {
    handshakes: "failed Join(s)",
    drops: "dropped node(s)",
    losses: "node(s) lost holding a task",
    departures: "departed node(s)",
  },
  dropping: "Dropping node {peer} in state {state}: {reason}{back}",
  lost: "Lost node {peer} in state {state}: {reason}{back}",
  failed: "Node {peer} failed in state {state}: {reason}{back}",
});

/** The node turned down part of its task; the task goes back to the queue. */
class TaskRefusedError extends Error {}

/** One binary node connection, one task. */
export class OwnerSession implements RunnerLink, Session {
  /** The node's address, without its port: Join names no host, so it is counted and judged by it (see RunnerLink.host). */
  readonly host: string;
  /** The node's address and port. */
  readonly peer: string;
  /** The node's stable id (vico extension), if it has one. */
  readonly runnerId?: string;
  readonly #transport: Transport;
  readonly #reader: BufferedReader;
  readonly #ctx: OwnerSessionContext;
  readonly #writeLock = new Mutex();
  #state: OwnerState = "Joining";
  #modules = new Set<string>();
  readonly #kit: SessionKit<Assignment>;
  #startNow!: () => void;
  #abandonStart!: (err: Error) => void;
  readonly #started = new Promise<void>((resolve, reject) => {
    this.#startNow = resolve;
    this.#abandonStart = reject;
  });
  #abandoned: string | undefined;
  #stopPending = false;
  /** The task ran out of its time limit (it was sent Stop for it). */
  #timedOut = false;
  /** A Status probe is still being written (a node that reads nothing gets no second one). */
  #probing = false;
  #job = -1;
  readonly #extension: Extension | undefined;

  /**
   * @param transport The connection.
   * @param reader Its reader (the server peeked at its first byte).
   * @param ctx The manager around this session.
   * @param handshake The window the Join must arrive in.
   */
  constructor(
    transport: Transport,
    reader: BufferedReader,
    ctx: OwnerSessionContext,
    handshake: HandshakeWindow,
    extension?: Extension,
  ) {
    this.#transport = transport;
    this.#reader = reader;
    this.#ctx = ctx;
    this.peer = transport.peer;
    this.host = transport.peer.replace(/:\d+$/, "");
    this.#extension = extension;
    this.runnerId = extension?.hello.id;
    this.#kit = new SessionKit(this, transport, ctx.scheduler, handshake, extension?.held ?? []);
    this.#started.catch(() => {});
  }

  /** Current state. */
  get state(): OwnerState {
    return this.#state;
  }

  /** Modules the node announced in Join. */
  get modules(): string[] {
    return [...this.#modules];
  }

  /** What it announced in Join: it is a binary node. */
  get binary(): { readonly modules: readonly string[] } {
    return { modules: this.modules };
  }

  /** A node takes any task whose modules it announced. */
  accepts(cls: JobClass): boolean {
    return cls.modules.every((m) => this.#modules.has(m));
  }

  /** Scheduler: this node's task. */
  assign(job: number, rank: number, attempt: number): void {
    this.#kit.request.answer({ kind: "task", job, rank, attempt });
  }

  /** Scheduler: nothing left. */
  release(): void {
    this.#kit.request.answer({ kind: "release" });
  }

  /** Scheduler: tasks remain, none for this node. */
  refuse(reason: string): void {
    this.#kit.request.answer({ kind: "refuse", reason });
  }

  /** Scheduler: start now (all gang members are ready). */
  start(): void {
    this.#startNow();
  }

  /** Scheduler: the gang lost a member; this node's part is void. */
  abandon(reason: string): void {
    this.#abandoned = reason;
    this.#abandonStart(new Error(reason));
    // A member already waiting for the gang's commit is let go too.
    if (this.#job >= 0) this.#ctx.recorder.abandon(this.#job, reason);
    this.#send({ kind: "disconnect", reason: `task abandoned: ${reason}` }).catch(() => {}).finally(() =>
      this.#transport.close()
    );
  }

  /** Ends the connection now. */
  close(): void {
    this.#transport.close();
  }

  /** Serves the connection until it closes. Never rejects. */
  run(): Promise<void> {
    if (this.#ctx.pulseMs > 0) this.#kit.liveness.watch(this.#ctx.pulseMs, () => this.#probe());
    return this.#kit.run(() => this.#serve(), (err) => this.#report(err), () => (this.#state = "Closed"));
  }

  /** Joining, then the one task (or none): Idle to Leaving. */
  async #serve(): Promise<void> {
    if (!await this.#join()) return;
    if (this.#extension?.answer.resume === 1) {
      // The node came back to deliver the task it held while we were apart.
      const held = this.#extension.held[0];
      if (held === undefined) throw new ProtocolError("The task this node held was taken by another meanwhile");
      this.#job = held.job;
      await this.#resumeTask(held.job, held.attempt);
      return;
    }
    const a = await this.#requestTask();
    if (a.kind === "release") {
      await this.#send({ kind: "disconnect", reason: NO_MORE_TASKS });
    } else if (a.kind === "refuse") {
      log.info("Refusing node {peer} (modules {modules}): {reason}", {
        peer: this.peer,
        modules: [...this.#modules].join(",") || "none",
        reason: a.reason,
      });
      await this.#send({ kind: "reject", reason: a.reason });
    } else {
      this.#job = a.job;
      await this.#serveTask(a.job, a.rank, a.attempt);
    }
  }

  /**
   * Liveness, every pulse: a node silent for {@linkcode SILENT_PULSES} pulses
   * in a {@linkcode WATCHED_STATES} state is dropped (a vanished or paused
   * node, or one that stopped reading, answers nothing); one in a
   * {@linkcode PROBED_STATES} state is sent Status. A transfer in progress
   * has its own watchdog.
   */
  #probe(): void {
    if (!this.#kit.joined || this.#kit.liveness.transferring) return;
    if (WATCHED_STATES.has(this.#state)) {
      const what = this.#state === "Finished" ? "no Result or Leave" : "no Status reply";
      if (this.#kit.liveness.dropIfSilent(this.#ctx.pulseMs, "Node", what)) return;
    }
    if (this.#probing || !PROBED_STATES.has(this.#state)) return;
    this.#probing = true;
    this.#send({ kind: "statusRequest" }).catch(() => {}).finally(() => (this.#probing = false));
  }

  /** Runs one File or Result transfer under the transfer watchdog (see {@linkcode watchTransfer}). */
  #transfer<T>(what: string, body: (moved: () => void) => Promise<T>): Promise<T> {
    return watchTransfer(
      this.#kit.liveness,
      this.#ctx.transferIdleTimeoutMs,
      (stalled) => `No progress for ${Math.round(stalled / 100) / 10}s in the middle of ${what}`,
      body,
    );
  }

  /** Reads Join; false when the node was turned away. */
  async #join(): Promise<boolean> {
    const join = await this.#next();
    if (join.kind !== "join") throw new ProtocolError("Expected Join", join.kind);
    if (!isAcceptedBinaryVersion(join.version)) {
      await this.#send({ kind: "reject", reason: `unsupported version ${join.version}; this owner speaks 1.x` });
      return false;
    }
    this.#modules = new Set(join.modules);
    this.#kit.join();
    return true;
  }

  /** Idle: asks the scheduler for a task; while it holds the request, watches the node. */
  #requestTask(): Promise<Assignment> {
    return this.#kit.request.request(
      () => this.#ctx.scheduler.onJobRequest(this),
      (assigned) => this.#waitHeld(assigned, "a task"),
    );
  }

  /**
   * Waits for `signal` while the node may only answer our Status probes: any
   * other frame, or the end of the stream, means it left (or broke).
   */
  async #waitHeld<T>(signal: Promise<T>, what: string): Promise<T> {
    while (true) {
      const peek = this.#reader.peekU8();
      const got = await Promise.race([signal.then((value) => ({ value })), peek.then((byte) => ({ byte }))]);
      if ("value" in got) return got.value;
      if (got.byte === null) {
        throw this.#kit.liveness.closedError(`Node closed the connection while waiting for ${what}`);
      }
      const frame = await this.#frame();
      if (frame.kind !== "status") throw new ProtocolError(`Node sent a frame while waiting for ${what}`, frame.kind);
    }
  }

  async #serveTask(job: number, rank: number, attempt: number): Promise<void> {
    const { jobs } = this.#ctx;
    const task = taskOf(jobs, job);
    const handedOutAt = new Date().toISOString();
    if (this.runnerId !== undefined) await this.#ctx.noteAssignment(job, attempt, this);
    log.debug("Node {peer} takes job {line}{rank}", {
      peer: this.peer,
      line: jobs.lines[job],
      rank: task.nodes > 1 ? ` as member ${rank} of ${task.nodes}` : "",
    });
    await this.#send({ kind: "accept" });
    this.#state = "Idle";
    await this.#send({ kind: "statusRequest" });
    const status = await this.#frame();
    if (status.kind !== "status") throw new ProtocolError("Expected a Status reply", status.kind);
    if (status.value !== NodeStatus.IDLE) throw new ProtocolError(`Node reports status ${status.value}, not idle`);

    this.#state = "WaitingForInput";
    if (this.#extension !== undefined) {
      // A vico node is told the task's tag (run, key, attempt) and its line
      // (`seq=`, its runs' VICO_SEQ); an identified one holds the task (and
      // its results) across a loss of this connection by that tag, and names
      // exactly that hand-out when it comes back.
      const tag = formatTag({ run: this.#ctx.run, key: this.#ctx.keyOf(job), attempt });
      const key = new TextEncoder().encode(`${tag} ${SEQ_FIELD}${this.#ctx.jobs.lines[job]}\n`);
      await this.#writeLock.run(async () => {
        await this.#transport.write(encodeToNode({ kind: "file", name: TASK_KEY_FILE, size: key.length }));
        await this.#transport.write(key);
      });
      await this.#expectAccept(`file ${TASK_KEY_FILE}`);
    }
    await this.#stage(task);
    await this.#send({ kind: "wait" });
    this.#state = "ReadyToStart";
    this.#ctx.scheduler.onReadyToStart(this, job);
    await this.#waitForStart();

    await this.#send({ kind: "start" });
    const reply = await this.#next(true);
    if (reply.kind === "reject") throw new TaskRefusedError(`node refused Start: ${reply.reason}`);
    if (reply.kind !== "started") throw new ProtocolError("Expected Accept with the start time", reply.kind);
    this.#state = "Working";
    await this.#finishTask(job, rank, attempt, task, handedOutAt, reply.time);
  }

  /** A node delivers a task it held across a lost connection: it reports where it is, then finishes as usual. */
  async #resumeTask(job: number, attempt: number): Promise<void> {
    const task = taskOf(this.#ctx.jobs, job);
    log.info("Node {peer} ({id}) is back with the task at line {line}", {
      peer: this.peer,
      id: this.runnerId,
      line: this.#ctx.jobs.lines[job],
    });
    await this.#send({ kind: "accept" });
    this.#state = "Working";
    await this.#send({ kind: "statusRequest" });
    await this.#finishTask(job, 1, attempt, task, new Date().toISOString(), "");
  }

  /** Working → Finished → Leaving: waits for Finished, takes the Results and Leave, records. */
  async #finishTask(
    job: number,
    rank: number,
    attempt: number,
    task: TaskBundle,
    handedOutAt: string,
    started: string,
  ): Promise<void> {
    const limit = task.timeoutMs ?? this.#ctx.defaultTimeoutMs;
    const timer = limit === undefined ? undefined : setTimeout(() => this.#timeout(task, limit), limit);
    let finished: Extract<FromNode, { kind: "finished" }>;
    try {
      finished = await this.#untilFinished();
    } finally {
      clearTimeout(timer);
    }
    // May this delivery commit? Its bytes are read either way.
    const admission = await this.#ctx.recorder.admit(job, attempt, this);
    if (admission.kind === "unknown") throw new ProtocolError("Finished for a task this node was not given");
    // Finished before the Accept goes out: no probe may follow it (its answer would trail the Leave).
    this.#state = "Finished";
    await this.#send({ kind: "accept" });

    let output: StagedOutput | undefined;
    const returned: ReturnedFile[] = [];
    try {
      for (const name of task.rets) {
        const staged = await this.#receiveResult();
        if (name === task.outputLog) output = staged;
        else returned.push({ name, staged });
      }
      const leave = await this.#nextSkippingStopReply();
      if (leave.kind !== "leave") throw new ProtocolError("Expected Leave after the results", leave.kind);
    } catch (err) {
      await output?.discard();
      for (const f of returned) await f.staged?.discard();
      if (admission.kind === "accepted") this.#ctx.recorder.refuse(admission.ticket);
      throw err;
    }
    this.#state = "Leaving";
    const delivery = {
      link: this,
      rank,
      status: finished.status,
      started,
      handedOutAt,
      output,
      returned,
      timedOut: this.#timedOut,
    };
    // Leave is accepted only once a record is durable.
    await this.#whileRecording(
      admission.kind === "accepted"
        ? this.#ctx.recorder.record(admission.ticket, delivery)
        : this.#ctx.recorder.discard(job, delivery, admission.settled),
    );
    await this.#send({ kind: "accept" });
  }

  /**
   * Leaving: while the record is made the node is still probed (see
   * {@linkcode PROBED_STATES}) and its Status replies are read and dropped
   * here. Anything else, or the end of the stream, only stops the reading:
   * the node has delivered, and the record goes on.
   */
  async #whileRecording(work: Promise<void>): Promise<void> {
    const over = work.then(() => "over" as const, () => "over" as const);
    const drain = async () => {
      while (await Promise.race([over, this.#reader.peekU8()]) !== "over") {
        if ((await this.#frame()).kind !== "status") return;
      }
    };
    drain().catch(() => {});
    await work;
  }

  /** Sends every input, inline script, Run and Ret, each answered by Accept or Reject. */
  async #stage(task: TaskBundle): Promise<void> {
    for (const input of task.inputs) {
      await this.#sendFile(input.name, input.src);
      await this.#expectAccept(`file ${input.name}`);
    }
    for (const file of task.inline) {
      await this.#writeLock.run(async () => {
        await this.#transport.write(encodeToNode({ kind: "file", name: file.name, size: file.bytes.length }));
        await this.#transport.write(file.bytes);
      });
      await this.#expectAccept(`file ${file.name}`);
    }
    for (const run of task.runs) {
      await this.#send({ kind: "run", program: run.program, log: run.log });
      await this.#expectAccept(`run ${run.program}`);
    }
    for (const name of task.rets) {
      await this.#send({ kind: "ret", name });
      await this.#expectAccept(`return of ${name}`);
    }
  }

  async #sendFile(name: string, src: string): Promise<void> {
    using file = await Deno.open(src, { read: true });
    const size = (await file.stat()).size;
    await this.#writeLock.run(() =>
      this.#transfer(`file ${name}`, async (moved) => {
        await this.#transport.write(encodeToNode({ kind: "file", name, size }));
        await copyExact(file, size, async (chunk) => {
          await this.#transport.write(chunk);
          moved();
        }, { chunkBytes: CHUNK_BYTES, shortMessage: `Input ${src} shrank while being sent` });
      })
    );
  }

  async #expectAccept(what: string): Promise<void> {
    const reply = await this.#next();
    if (reply.kind === "accept") return;
    if (reply.kind === "reject") throw new TaskRefusedError(`node rejected the ${what}: ${reply.reason}`);
    throw new ProtocolError(`Expected Accept or Reject for the ${what}`, reply.kind);
  }

  /** Holds at ReadyToStart until the scheduler says start, watching the node meanwhile. */
  async #waitForStart(): Promise<void> {
    await this.#waitHeld(this.#started, "Start");
  }

  #timeout(task: TaskBundle, limit: number): void {
    if (this.#state !== "Working") return;
    log.warn("Task {task} on {peer} ran out of its {s}s: sending Stop", {
      task: task.label,
      peer: this.peer,
      s: limit / 1000,
    });
    this.#stopPending = true;
    this.#timedOut = true;
    this.#send({ kind: "stop" }).catch(() => {});
  }

  async #untilFinished(): Promise<Extract<FromNode, { kind: "finished" }>> {
    const frame = await this.#nextSkippingStopReply();
    if (frame.kind === "finished") return frame;
    throw new ProtocolError("Unexpected frame while the node works", frame.kind);
  }

  /** Reads a Result; its bytes stream into a staged file (or it is missing). */
  async #receiveResult(): Promise<StagedOutput | undefined> {
    const frame = await this.#nextSkippingStopReply();
    if (frame.kind !== "result") throw new ProtocolError("Expected a Result", frame.kind);
    if (frame.missing) return undefined;
    const staged = this.#ctx.results.stageOutput();
    try {
      await this.#transfer("a Result", (moved) =>
        this.#reader.pipeExact(frame.size, (chunk) => {
          moved();
          return staged.write(chunk);
        }));
      return staged;
    } catch (err) {
      await staged.discard();
      throw err;
    }
  }

  /** Reads the next frame; late answers to our Stop or Status probes may come first and are consumed. */
  async #nextSkippingStopReply(): Promise<FromNode> {
    while (true) {
      const frame = await this.#next();
      if (this.#stopPending && (frame.kind === "accept" || frame.kind === "reject")) {
        this.#stopPending = false;
        continue;
      }
      return frame;
    }
  }

  /** The next frame that is not a Status reply (probe answers can come at any time). */
  async #next(startReply = false): Promise<FromNode> {
    while (true) {
      const frame = await this.#frame(startReply);
      if (frame.kind !== "status") return frame;
    }
  }

  /** The next frame, whatever it is. */
  async #frame(startReply = false): Promise<FromNode> {
    const frame = await readFromNode(this.#reader, this.#ctx.limits, startReply);
    this.#kit.liveness.heard();
    if (frame === null) throw this.#kit.liveness.closedError(`Node closed the connection in state ${this.#state}`);
    if (frame.kind === "disconnect") {
      throw new VicoError("CONNECTION_CLOSED", `Node disconnected in state ${this.#state}: ${frame.reason}`);
    }
    return frame;
  }

  #send(msg: ToNode): Promise<void> {
    return this.#writeLock.run(() => this.#transport.write(encodeToNode(msg)));
  }

  async #report(err: unknown): Promise<void> {
    const job = this.#job;
    const held = job >= 0 && this.#ctx.scheduler.jobsOf(this).has(job);
    if (this.#abandoned !== undefined) {
      log.info("Node {peer} left its gang task: {why}", { peer: this.peer, why: this.#abandoned });
      await this.#ctx.recorder.abandon(job, this.#abandoned);
      return;
    }
    await failures.report({
      err,
      joined: this.#kit.joined,
      holding: held,
      dropReason: this.#kit.liveness.dropReason,
      peerFault: err instanceof ProtocolError || err instanceof TaskRefusedError,
      props: { peer: this.peer, state: this.#state, back: held ? "; its task goes back to the queue" : "" },
      tell: (reason) => this.#send({ kind: "disconnect", reason }),
    });
  }
}
