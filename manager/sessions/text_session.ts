/**
 * The manager's side of one text-protocol connection, as the draft's server
 * state machine: Accept → Wait ⇄ SendJob / ProcessJob → WaitClose.
 *
 * One session per connection; a session that fails (protocol error, closed
 * socket, silent runner, full disk) drops its runner with a reason and hands
 * its jobs back to the scheduler. It never throws to its caller.
 *
 * With the vico extension the runner has a stable id (a restarted manager
 * waits for it, and it may report jobs it ran for an earlier connection),
 * both sides send `PULSO` lines, and a runner silent for three pulses is
 * taken for lost.
 *
 * With the extension's `pipe` feature the exchange after KOMPRENAS is
 * pipelined (docs/protocol.md, "Pipelined text exchange"): the session
 * keeps reading while earlier results commit, answers each `PETO` in order
 * and acknowledges each result with `VICO/1 ack <tag>` once it is durable.
 * That mode is the "Pipelined exchange" part at the end of the class.
 *
 * @module
 */

import type { BufferedReader } from "../../protocol/buffered_reader.ts";
import { ProtocolError } from "../../core/errors.ts";
import { type FromRunnerText, TEXT_PROTOCOL_VERSION } from "../../protocol/messages.ts";
import { encodeLine, formatManagerLine, parseRunnerLine } from "../../protocol/text_codec.ts";
import {
  BACK_TAG_PREFIX,
  formatAck,
  formatTag,
  JOB_TAG_PREFIX,
  LEAVE_LINE,
  MAX_PIPE_REQUESTS,
  parseTag,
  PULSE_LINE,
  RESULT_TAG_PREFIX,
  SEQ_FIELD,
  type Tag,
} from "../../protocol/vico_extension.ts";
import type { Transport } from "../../transport/transport.ts";
import { type Message, SerialWriter } from "../../transport/serial_writer.ts";
import { logger, RateLimitedLog } from "../../util/log.ts";
import { isoNow } from "../../util/iso_now.ts";
import type { JobClass } from "../jobs/job_list.ts";
import type { StagedOutput } from "../results/results_store.ts";
import type { Admission, Delivery } from "../results/result_recorder.ts";
import type { RunnerLink } from "../scheduling/scheduler.ts";
import { FailureReporter } from "./failure_reporter.ts";
import { LIVENESS_CHECK_MAX_MS, LIVENESS_CHECK_MIN_MS } from "./liveness.ts";
import { SessionKit } from "./session_kit.ts";
import type { Extension, HandshakeWindow, SessionContext } from "./session_context.ts";
import { watchTransfer } from "./watch_transfer.ts";

/** The draft's server states (plus Closed, after the connection ends). */
export type ManagerTextState = "Accept" | "Wait" | "SendJob" | "ProcessJob" | "WaitClose" | "Closed";

/** What a text session needs from the manager around it. */
export interface TextSessionContext extends SessionContext {
  /** A plain runner that holds nothing and sends nothing for this long is dropped. */
  readonly idleTimeoutMs: number;
  /** Whether `--timeout` is set (plain runners cannot enforce it: they are warned about). */
  readonly jobTimeout: boolean;
}

const log = logger("manager");
const failures = new FailureReporter({
  counts: {
    handshakes: "failed handshake(s)",
    drops: "dropped runner(s)",
    losses: "runner(s) lost holding jobs",
    departures: "departed runner(s)",
  },
  dropping: "Dropping runner {who} in state {state}: {reason}{jobs}",
  lost: "Lost runner {who} in state {state}: {reason}{jobs}",
  failed: "Runner {who} failed in state {state}: {reason}{jobs}",
});
const plainUnderTimeout = new RateLimitedLog(log, "plain runner(s) under --timeout", 1, 60_000);
const FINO = encodeLine(formatManagerLine({ kind: "fino" }));
const PRETA = encodeLine(formatManagerLine({ kind: "preta" }));
const RICEVIS = encodeLine(formatManagerLine({ kind: "ricevis" }));
const VERSIO = encodeLine(formatManagerLine({ kind: "versio", version: TEXT_PROTOCOL_VERSION }));
const PULSE = encodeLine(PULSE_LINE);

type RezultoMsg = Extract<FromRunnerText, { kind: "rezulto" }>;

/** A pulse line was read (it is answered, and is no message). */
const PULSE_SEEN = Symbol("pulse");

/** A pipelined runner's own lines: it stops (`VICO/1 leave`), or gives a hand-out back unstarted (`VICO/1 back`). */
type PipeControl = { readonly kind: "leave" } | { readonly kind: "back"; readonly tag: Tag };

/** A runner's message: the draft's, or (pipelined only) a {@linkcode PipeControl}. */
type RunnerMessage = FromRunnerText | PipeControl;

/** The scheduler's answer to a PETO: a job and its attempt, or -1 for none (FINO). */
interface Answer {
  readonly job: number;
  readonly attempt: number;
}

/** One runner connection speaking the text protocol. */
export class ManagerTextSession implements RunnerLink {
  /** The name it announced in the hail (empty until then). */
  name = "";
  /** The runner's address. */
  readonly peer: string;
  /** It is counted and judged by its announced name (see RunnerLink.host). */
  get host(): string {
    return this.name;
  }
  /** The runner's stable id (vico extension), if it has one. */
  readonly runnerId?: string;
  /** A pipelined runner reports results while its PETOs wait (see RunnerLink.reportsWhileAsking). */
  get reportsWhileAsking(): boolean {
    return this.#pipe !== undefined;
  }
  readonly #transport: Transport;
  readonly #reader: BufferedReader;
  readonly #ctx: TextSessionContext;
  readonly #extension: Extension | undefined;
  readonly #pulseMs: number;
  /** Hand-outs and results carry their tags (the extension's `tag` feature). */
  readonly #tagged: boolean;
  /** The tag line that came just before the REZULTO being read. */
  #resultTag: (Tag & { timedOut: boolean }) | undefined;
  #state: ManagerTextState = "Accept";
  readonly #kit: SessionKit<Answer>;
  /** A line read that is still to be consumed (read while waiting for a job). */
  #pendingLine: Promise<string | null> | undefined;
  /** Jobs this connection was given and has not delivered, oldest first: when, and as which attempt. */
  readonly #handedOut = new Map<number, { at: string; attempt: number; key?: string; reported?: boolean }>();
  /** Pipelined exchange (the extension's `pipe` feature); its state is in {@linkcode PipeState}. */
  readonly #pipe: PipeState | undefined;

  /**
   * @param transport The connection.
   * @param reader The connection's reader (the server already peeked at it).
   * @param ctx The manager around this session.
   * @param handshake The window the hail must arrive in.
   * @param extension What a vico runner said in the extension's hello.
   */
  constructor(
    transport: Transport,
    reader: BufferedReader,
    ctx: TextSessionContext,
    handshake: HandshakeWindow,
    extension?: Extension,
  ) {
    this.#transport = transport;
    this.#reader = reader;
    this.#ctx = ctx;
    this.#extension = extension;
    this.peer = transport.peer;
    this.runnerId = extension?.hello.id;
    this.#pulseMs = (extension?.answer.pulse ?? 0) * 1000;
    this.#tagged = extension?.answer.tag === 1;
    this.#kit = new SessionKit(this, transport, ctx.scheduler, handshake, extension?.held ?? []);
    this.#pipe = this.#tagged && extension?.answer.pipe === 1 ? new PipeState(transport) : undefined;
  }

  /** Current state. */
  get state(): ManagerTextState {
    return this.#state;
  }

  /** A text runner carries plain command lines only. */
  accepts(cls: JobClass): boolean {
    return !cls.binaryOnly;
  }

  /** Scheduler's answer to the pending PETO: a job. */
  assign(job: number, _rank: number, attempt: number): void {
    this.#kit.request.answer({ job, attempt });
  }

  /** Scheduler's answer to the pending PETO: no more jobs. */
  release(): void {
    this.#kit.request.answer({ job: -1, attempt: 0 });
  }

  /** Jobs remain, but only for binary nodes: FINO as well. */
  refuse(): void {
    this.#kit.request.answer({ job: -1, attempt: 0 });
  }

  /** Serves the connection until it closes. Never rejects. */
  run(): Promise<void> {
    const peer = this.#transport.peer;
    const checkMs = Math.max(
      LIVENESS_CHECK_MIN_MS,
      Math.min(this.#pulseMs || LIVENESS_CHECK_MAX_MS, LIVENESS_CHECK_MAX_MS),
    );
    this.#kit.liveness.watch(checkMs, () => this.#watch());
    return this.#kit.run(
      async () => {
        await this.#accept();
        log.debug("Runner {host} joined from {peer}", { host: this.host, peer });
        if (await (this.#pipe === undefined ? this.#serve() : this.#servePipe(this.#pipe))) {
          log.debug("Runner {host} ({peer}) finished cleanly", { host: this.host, peer });
        }
      },
      (err) => this.#reportFailure(err),
      () => (this.#state = "Closed"),
    );
  }

  /** Closes the connection (the session then ends and gives its jobs back). */
  close(): void {
    this.#transport.close();
  }

  /** Drops a runner that went silent (no pulse), or a plain one idle too long. */
  #watch(): void {
    if (!this.#kit.joined || this.#state === "ProcessJob") return; // a transfer has its own progress timeout
    if (this.#kit.liveness.dropIfSilent(this.#pulseMs, "Runner", "no pulse")) return;
    const silent = this.#kit.liveness.silentMs;
    if (
      this.#pulseMs === 0 && this.#state === "Wait" && silent > this.#ctx.idleTimeoutMs &&
      this.#ctx.scheduler.jobsOf(this).size === 0
    ) {
      this.#kit.liveness.drop(`Runner idle for ${Math.round(silent / 1000)}s holding no job`);
    }
  }

  async #accept(): Promise<void> {
    // The server closes the connection if this does not finish in its window.
    const hail = await this.#next();
    if (hail.kind !== "hail") throw new ProtocolError("Expected the hail SALUTON; MI <HOSTNAME>", hail.kind);
    this.name = hail.host;
    await this.#transport.write(VERSIO);
    const ack = await this.#next();
    if (ack.kind !== "komprenas") throw new ProtocolError("Expected KOMPRENAS after VERSIO", ack.kind);
    this.#kit.join();
    if (this.#ctx.jobTimeout && this.#extension === undefined) {
      const warning = "Runner {host} speaks the plain protocol: --timeout cannot be enforced on its jobs";
      plainUnderTimeout.log("warn", warning, { host: this.host });
    }
    this.#state = "Wait";
  }

  /** Runs states Wait to WaitClose; true when the runner said FINO ANKAU. */
  async #serve(): Promise<boolean> {
    let from: "Wait" | "WaitClose" = "Wait";
    let result: RezultoMsg | undefined;
    while (true) {
      switch (this.#state) {
        case "Wait": {
          const msg = await this.#next();
          if (msg.kind === "peto") {
            this.#state = "SendJob";
          } else if (msg.kind === "rezulto") {
            [result, from, this.#state] = [msg, "Wait", "ProcessJob"];
          } else {
            throw new ProtocolError("Unexpected message in state Wait", msg.kind);
          }
          break;
        }
        case "SendJob": {
          const { job, attempt } = await this.#requestJob();
          if (job === -1) {
            await this.#transport.write(FINO);
            this.#state = "WaitClose";
          } else {
            // Tagged: the key is made once here, and matched against the result's tag later.
            const key = this.#tagged ? this.#ctx.keyOf(job) : undefined;
            this.#handedOut.set(job, { at: isoNow(), attempt, key });
            if (this.runnerId !== undefined) await this.#ctx.noteAssignment(job, attempt, this);
            if (key !== undefined) {
              const tag = formatTag({ run: this.#ctx.run, key, attempt });
              // The job's line (a template's {#}): the runner gives it to the job as VICO_SEQ.
              await this.#transport.write(
                encodeLine(`${JOB_TAG_PREFIX}${tag} ${SEQ_FIELD}${this.#ctx.jobs.lines[job]}`),
              );
            }
            await this.#transport.write(encodeLine(this.#ctx.jobs.commands[job]));
            this.#state = "Wait";
          }
          break;
        }
        case "ProcessJob":
          await this.#processJob(result!);
          this.#state = from;
          break;
        case "WaitClose": {
          const msg = await this.#next();
          if (msg.kind === "finoAnkau") return true;
          if (msg.kind === "rezulto") {
            [result, from, this.#state] = [msg, "WaitClose", "ProcessJob"];
          } else if (msg.kind === "peto") {
            await this.#transport.write(FINO);
          } else {
            throw new ProtocolError("Unexpected message in state WaitClose", msg.kind);
          }
          break;
        }
        default:
          return false;
      }
    }
  }

  /** SendJob: asks the scheduler; while it holds the request, watches the runner (pulses, or leaving). */
  #requestJob(): Promise<Answer> {
    return this.#kit.request.request(
      () => this.#ctx.scheduler.onJobRequest(this),
      (assigned) => this.#holdPeto(assigned),
    );
  }

  /** SendJob, held: the runner sends nothing but pulses until answered. */
  async #holdPeto(assigned: Promise<Answer>): Promise<Answer> {
    while (true) {
      this.#pendingLine ??= this.#readLine();
      const got = await Promise.race([assigned.then((job) => ({ job })), this.#pendingLine.then((line) => ({ line }))]);
      if ("job" in got) return got.job;
      this.#pendingLine = undefined;
      if (got.line === null) {
        throw this.#kit.liveness.closedError("Runner closed the connection while waiting for a job");
      }
      if (this.#pulseMs > 0 && got.line === PULSE_LINE) {
        await this.#transport.write(PULSE);
        continue;
      }
      throw new ProtocolError("Runner sent a line while waiting for a job", got.line);
    }
  }

  /**
   * ProcessJob: the job is the oldest this connection was given with that
   * command line; the recorder (its ledger) says whether this delivery may
   * commit. Its bytes are read either way; `RICEVIS` goes only once a
   * record is durable (or, for a late duplicate, once the commit that beat
   * it has ended).
   */
  async #processJob(msg: RezultoMsg): Promise<void> {
    const { jobs, limits, recorder } = this.#ctx;
    const tag = this.#resultTag;
    this.#resultTag = undefined;
    if (this.#tagged && tag === undefined) throw new ProtocolError("REZULTO without its tag line", msg.job);
    const job = tag === undefined ? this.#oldestNamed(msg.job) : this.#jobTagged(tag);
    if (job === undefined || jobs.commands[job] !== msg.job) {
      throw new ProtocolError("REZULTO for a job this runner does not hold", msg.job);
    }
    if (msg.size > limits.maxOutputBytes) {
      throw new ProtocolError(`Output of ${msg.size} bytes exceeds the limit of ${limits.maxOutputBytes}`);
    }
    // A kept result from an earlier connection: handed out then, not here.
    const handedOut = this.#handedOut.get(job) ?? { at: isoNow(), attempt: tag!.attempt };
    const attempt = tag?.attempt ?? handedOut.attempt;
    const admission = await recorder.admit(job, attempt, this);
    if (admission.kind === "unknown") throw new ProtocolError("REZULTO for a job this runner was not given", msg.job);
    await this.#transport.write(PRETA);
    const accepted = admission.kind === "accepted";
    const output = this.#ctx.results.stageOutput();
    await this.#readOutput(msg.size, output, accepted, () => {
      if (accepted) recorder.refuse(admission.ticket);
    });
    await this.#commit(msg, job, attempt, handedOut.at, tag?.timedOut ?? false, admission, output);
    await this.#transport.write(RICEVIS);
  }

  /**
   * A result read whole: the connection no longer has that hand-out out,
   * and its commit (or, for a job already settled, its discard) starts;
   * the promise settles once that is durable, when it may be acknowledged.
   */
  #commit(
    msg: RezultoMsg,
    job: number,
    attempt: number,
    handedOutAt: string,
    timedOut: boolean,
    admission: Exclude<Admission, { kind: "unknown" }>,
    output: StagedOutput | undefined,
  ): Promise<void> {
    const recorder = this.#ctx.recorder;
    if (this.#handedOut.get(job)?.attempt === attempt) this.#handedOut.delete(job);
    const delivery: Delivery = {
      link: this,
      rank: 1,
      status: msg.status,
      handedOutAt,
      output,
      returned: [],
      timedOut,
      // A pipelined runner goes on without the ack; under --halt the next hand-out waits for this record.
      patient: this.reportsWhileAsking && !this.#ctx.settleBeforeNext,
    };
    return admission.kind === "accepted"
      ? recorder.record(admission.ticket, delivery)
      : recorder.discard(job, delivery, admission.settled);
  }

  /**
   * Reads a result's `size` raw bytes into `output` (or throws them away
   * unless `keep`), under the transfer watchdog. On failure the output is
   * discarded and `onFailure` called before the error is rethrown.
   */
  async #readOutput(size: number, output: StagedOutput, keep: boolean, onFailure: () => void): Promise<void> {
    if (size === 0) return; // nothing on the wire: nothing to watch
    // A runner that stops sending mid-output would hold its job forever.
    const idleMs = this.#ctx.transferIdleTimeoutMs;
    try {
      await watchTransfer(
        this.#kit.liveness,
        idleMs,
        () => `Runner sent no output for ${idleMs / 1000}s in the middle of a result`,
        (moved) =>
          this.#reader.pipeExact(size, (chunk) => {
            moved();
            return keep ? output.write(chunk) : undefined;
          }),
      );
    } catch (err) {
      await output.discard();
      onFailure();
      throw err;
    }
  }

  /** The oldest job this connection was given with that command line (untagged results). */
  #oldestNamed(command: string): number | undefined {
    for (const j of this.#handedOut.keys()) if (this.#ctx.jobs.commands[j] === command) return j;
    return undefined;
  }

  /** The job a tagged result names: one of this connection's, or one its runner was issued earlier. */
  #jobTagged(tag: Tag): number | undefined {
    if (tag.run !== this.#ctx.run && !this.#ctx.scheduler.ledger.knowsRun(tag.run)) return undefined;
    for (const [j, h] of this.#handedOut) if (h.attempt === tag.attempt && h.key === tag.key) return j;
    return this.runnerId === undefined ? undefined : this.#ctx.scheduler.ledger.issuedJobOfKey(tag.key);
  }

  /** A line already in the reader's buffer (heard now), without waiting; `undefined` if none is whole yet. */
  #bufferedLine(): string | undefined {
    const line = this.#reader.bufferedLine();
    if (line !== undefined) this.#kit.liveness.heard();
    return line;
  }

  #readLine(): Promise<string | null> {
    return this.#reader.readLine().then((line) => {
      this.#kit.liveness.heard();
      return line;
    });
  }

  /** The next runner message; pulses are answered and skipped. */
  async #next(): Promise<RunnerMessage> {
    while (true) {
      const pending = this.#pendingLine;
      this.#pendingLine = undefined;
      const line = pending === undefined ? this.#bufferedLine() ?? await this.#readLine() : await pending;
      if (line === null) throw this.#kit.liveness.closedError("Runner closed the connection");
      const msg = this.#take(line);
      if (msg === PULSE_SEEN) {
        if (this.#pipe !== undefined) this.#pipe.send(PULSE);
        else await this.#transport.write(PULSE);
      } else if (msg !== undefined) return msg;
    }
  }

  /**
   * The next runner message if its lines are in the reader's buffer already
   * (pipelined sessions: pulses are answered through the pipe's writer);
   * `undefined` when the next one must be waited for.
   */
  #nextNow(pipe: PipeState): RunnerMessage | undefined {
    while (this.#pendingLine === undefined) {
      const line = this.#bufferedLine();
      if (line === undefined) return undefined;
      const msg = this.#take(line);
      if (msg === PULSE_SEEN) pipe.send(PULSE);
      else if (msg !== undefined) return msg;
    }
    return undefined;
  }

  /**
   * One line from the runner: its message; or a pulse (to answer) or a
   * result tag (kept for the REZULTO that follows), which are no message.
   */
  #take(line: string): RunnerMessage | typeof PULSE_SEEN | undefined {
    if (this.#pulseMs > 0 && line === PULSE_LINE) {
      // Pulses go between whole messages, never between a result's tag line and its REZULTO.
      if (this.#resultTag !== undefined) throw new ProtocolError("A result tag must come just before REZULTO", line);
      return PULSE_SEEN;
    }
    if (this.#tagged && line.startsWith(RESULT_TAG_PREFIX)) {
      if (this.#resultTag !== undefined) throw new ProtocolError("Two result tags in a row", line);
      const tag = parseTag(line.slice(RESULT_TAG_PREFIX.length));
      // A runner that does not know seq= may echo it: it is ignored here.
      const fields = tag.rest === "" ? [] : tag.rest.split(" ").filter((f) => !/^seq=[0-9]{1,15}$/.test(f));
      if (fields.length > 1 || (fields.length === 1 && fields[0] !== "timedout=1")) {
        throw new ProtocolError("Unknown result tag field", line);
      }
      this.#resultTag = { run: tag.run, key: tag.key, attempt: tag.attempt, timedOut: fields[0] === "timedout=1" };
      return undefined;
    }
    if (this.#pipe !== undefined && (line === LEAVE_LINE || line.startsWith(BACK_TAG_PREFIX))) {
      if (this.#resultTag !== undefined) throw new ProtocolError("A result tag must come just before REZULTO", line);
      if (line === LEAVE_LINE) return { kind: "leave" };
      const tag = parseTag(line.slice(BACK_TAG_PREFIX.length));
      if (tag.rest !== "") throw new ProtocolError("Unknown field after a tag given back", line);
      return { kind: "back", tag };
    }
    const msg = parseRunnerLine(line);
    if (this.#resultTag !== undefined && msg.kind !== "rezulto") {
      throw new ProtocolError("A result tag must come just before REZULTO", line);
    }
    return msg;
  }

  // ---------------------------------------------------------------------------
  // Pipelined exchange (`pipe=1`): docs/protocol.md, "Pipelined text exchange".
  // One loop reads (PETO, results, pulses, FINO ANKAU); another answers the
  // PETOs in order; each result's ack waits for its commit, in arrival order.
  // ---------------------------------------------------------------------------

  /** Reads until FINO ANKAU (true); a failure of the answering side or a commit ends it with that failure. */
  async #servePipe(pipe: PipeState): Promise<boolean> {
    void this.#answerRequests(pipe);
    try {
      while (true) {
        const msg = this.#nextNow(pipe) ?? await this.#next();
        if (pipe.failure !== undefined) throw pipe.failure;
        if (msg.kind === "peto") {
          if (++pipe.requests > MAX_PIPE_REQUESTS) {
            throw new ProtocolError(`More than ${MAX_PIPE_REQUESTS} PETO unanswered`);
          }
          pipe.wake();
        } else if (msg.kind === "rezulto") {
          const reading = this.#receivePipe(pipe, msg);
          if (reading !== undefined) await reading;
        } else if (msg.kind === "leave") {
          this.#leave(pipe);
        } else if (msg.kind === "back") {
          this.#takeBack(msg.tag);
        } else if (msg.kind === "finoAnkau") {
          if (!pipe.finoSent && !pipe.leaving) throw new ProtocolError("FINO ANKAU before FINO", msg.kind);
          await pipe.acked();
          if (pipe.failure !== undefined) throw pipe.failure;
          await pipe.writer.drain();
          return true;
        } else {
          throw new ProtocolError(`Unexpected message in state ${this.#state}`, msg.kind);
        }
      }
    } catch (err) {
      // The connection was closed under the reader because the other side failed: that failure is the reason.
      throw pipe.failure ?? err;
    } finally {
      pipe.closed = true;
      pipe.wake();
      // Results read whole finish committing before the connection's other jobs go back.
      await Promise.allSettled([...pipe.commits]);
    }
  }

  /** Answers the PETOs one by one, in the order they came: a job (its tag line and line in one write) or FINO. */
  async #answerRequests(pipe: PipeState): Promise<void> {
    const { scheduler, recorder } = this.#ctx;
    try {
      while (!pipe.closed) {
        if (pipe.requests === 0) {
          await new Promise<void>((resolve) => (pipe.wake = resolve));
          continue;
        }
        if (pipe.finoSent || pipe.leaving) {
          pipe.requests--;
          pipe.finoSent = true;
          this.#state = "WaitClose";
          pipe.reply(FINO);
          continue;
        }
        if (this.#ctx.settleBeforeNext && pipe.commits.size > 0) {
          await Promise.allSettled([...pipe.commits]);
          continue;
        }
        // A break the quarantine gives this host holds its answers, as the lock-step runner's lock would.
        const pause = recorder.pauseLeft(this.host);
        if (pause > 0) {
          await new Promise((resolve) => setTimeout(resolve, pause));
          continue;
        }
        const asked = this.#kit.request.ask(() => scheduler.onJobRequest(this));
        const { job, attempt } = asked instanceof Promise ? await asked : asked.answer;
        if (pipe.closed) return;
        if (job === -1 && pipe.commits.size > 0 && !pipe.leaving) {
          // The scheduler holds this connection's PETOs while anything may come back (see reportsWhileAsking); but
          // a result committing here may yet requeue its job (a retry): ask again once settled.
          await Promise.allSettled([...pipe.commits]);
          continue;
        }
        pipe.requests--;
        if (job === -1) {
          pipe.finoSent = true;
          this.#state = "WaitClose";
          pipe.reply(FINO);
          continue;
        }
        const key = this.#ctx.keyOf(job);
        this.#handedOut.set(job, { at: isoNow(), attempt, key });
        const tag = formatTag({ run: this.#ctx.run, key, attempt });
        const bytes = `${JOB_TAG_PREFIX}${tag} ${SEQ_FIELD}${this.#ctx.jobs.lines[job]}\n${
          this.#ctx.jobs.commands[job]
        }\n`;
        // An identified runner's assignment is durable before its job goes out (later answers wait their turn).
        pipe.reply(bytes, this.runnerId === undefined ? undefined : this.#ctx.noteAssignment(job, attempt, this));
      }
    } catch (err) {
      pipe.fail(err);
    }
  }

  /**
   * The runner stops (`VICO/1 leave`): it asks for nothing more, so every
   * PETO it has unanswered is answered FINO, a held one at once (its
   * request is withdrawn from the scheduler), and FINO ANKAU may follow.
   */
  #leave(pipe: PipeState): void {
    if (pipe.leaving) throw new ProtocolError("VICO/1 leave twice", LEAVE_LINE);
    pipe.leaving = true;
    if (this.#kit.request.pending) {
      this.#ctx.scheduler.withdraw(this);
      this.#kit.request.answer({ job: -1, attempt: 0 });
    }
    pipe.wake();
  }

  /**
   * The runner gives back a job it was handed and did not start (it is
   * stopping): the job goes back to the front of the queue with no loss
   * counted against it. A tag that names no unreported hand-out of this
   * connection is a protocol error.
   */
  #takeBack(tag: Tag): void {
    const held = tag.run === this.#ctx.run
      ? [...this.#handedOut].find(([, h]) => h.attempt === tag.attempt && h.key === tag.key && !h.reported)
      : undefined;
    const job = held?.[0];
    if (job === undefined || !this.#ctx.scheduler.giveBack(this, job)) {
      throw new ProtocolError("VICO/1 back for a job this runner does not hold", formatTag(tag));
    }
    this.#handedOut.delete(job);
    log.debug("Runner {host} gave back {job} unstarted: it goes back to the queue", {
      host: this.host,
      job: this.#ctx.jobs.commands[job],
    });
  }

  /**
   * A pipelined result: checked on its REZULTO line, its bytes read at once
   * (no PRETA), then committed while the session reads on; its ack goes out
   * once durable, after the acks of the results before it.
   */
  #receivePipe(pipe: PipeState, msg: RezultoMsg): Promise<void> | undefined {
    const { jobs, limits, recorder } = this.#ctx;
    const tag = this.#resultTag;
    this.#resultTag = undefined;
    if (tag === undefined) throw new ProtocolError("REZULTO without its tag line", msg.job);
    const job = this.#jobTagged(tag);
    if (job === undefined || jobs.commands[job] !== msg.job) {
      throw new ProtocolError("REZULTO for a job this runner does not hold", msg.job);
    }
    if (msg.size > limits.maxOutputBytes) {
      throw new ProtocolError(`Output of ${msg.size} bytes exceeds the limit of ${limits.maxOutputBytes}`);
    }
    const handed = this.#handedOut.get(job);
    const handedOutAt = handed?.at ?? isoNow();
    if (handed?.attempt === tag.attempt) handed.reported = true; // no longer one it may give back
    // Most results are admitted (or not) at once; one racing another attempt's commit is read on.
    const now = recorder.admitNow(job, tag.attempt, this);
    const admission = now.kind === "duplicate" && now.busy === true ? recorder.admit(job, tag.attempt, this) : now;
    return this.#receiveAdmitted(pipe, msg, job, tag, handedOutAt, admission);
  }

  /**
   * A pipelined result, admitted (or a duplicate): its bytes read (if any),
   * then committed or discarded. One whose admission waits for another
   * attempt's commit (a promise) has its bytes staged meanwhile, and the
   * session reads on; its ack keeps its place in the order.
   */
  #receiveAdmitted(
    pipe: PipeState,
    msg: RezultoMsg,
    job: number,
    tag: Tag & { timedOut: boolean },
    handedOutAt: string,
    admission: Admission | Promise<Admission>,
  ): Promise<void> | undefined {
    if (!(admission instanceof Promise) && admission.kind === "unknown") {
      throw new ProtocolError("REZULTO for a job this runner was not given", msg.job);
    }
    if (msg.size === 0) {
      this.#deliverPipe(pipe, msg, job, tag, handedOutAt, admission, undefined); // no bytes: nothing to wait for
      return undefined;
    }
    // A pending admission may yet be accepted: its bytes are kept until it is known.
    const accepted = admission instanceof Promise || admission.kind === "accepted";
    const output = this.#ctx.results.stageOutput();
    const state = this.#state;
    this.#state = "ProcessJob";
    return this.#readOutput(msg.size, output, accepted, () => {
      if (admission instanceof Promise) {
        // Dropped mid-output: a ticket it is given later is handed back at once.
        admission.then((later) => later.kind === "accepted" && this.#ctx.recorder.refuse(later.ticket));
      } else if (admission.kind === "accepted") this.#ctx.recorder.refuse(admission.ticket);
    }).finally(() => (this.#state = state)).then(() =>
      this.#deliverPipe(pipe, msg, job, tag, handedOutAt, admission, output)
    );
  }

  /** A pipelined result read whole: committed (or discarded) while the session reads on; acked once durable. */
  #deliverPipe(
    pipe: PipeState,
    msg: RezultoMsg,
    job: number,
    tag: Tag & { timedOut: boolean },
    handedOutAt: string,
    admission: Exclude<Admission, { kind: "unknown" }> | Promise<Admission>,
    output: StagedOutput | undefined,
  ): void {
    const commit = (a: Exclude<Admission, { kind: "unknown" }>) =>
      this.#commit(msg, job, tag.attempt, handedOutAt, tag.timedOut, a, output);
    const committed = admission instanceof Promise
      ? admission.then(async (later) => {
        if (later.kind !== "unknown") return await commit(later);
        await output?.discard();
        throw new ProtocolError("REZULTO for a job this runner was not given", msg.job);
      })
      : commit(admission);
    pipe.ack(committed, formatAck(tag) + "\n");
  }

  #reportFailure(err: unknown): Promise<void> {
    const who = this.host ? `${this.host} (${this.#transport.peer})` : this.#transport.peer;
    const held = this.#kit.joined ? this.#ctx.scheduler.jobsOf(this).size : 0;
    const jobs = held === 0
      ? ""
      : this.runnerId !== undefined && !(err instanceof ProtocolError)
      ? `; its ${held} job(s) wait for it to come back`
      : `; ${held} job(s) go back to the queue`;
    return failures.report({
      err,
      joined: this.#kit.joined,
      holding: held > 0,
      dropReason: this.#kit.liveness.dropReason,
      peerFault: err instanceof ProtocolError,
      props: { who, state: this.#state, jobs },
      tell: (reason) => this.#transport.write(encodeLine(formatManagerLine({ kind: "eraro", reason }))),
    });
  }
}

/**
 * How long a durable result's ack may wait to go out in the same write as
 * its connection's next message (a job, FINO, a pulse): a runner busy with
 * short jobs then gets one write per job instead of two.
 */
export const ACK_HOLD_MS = 5;

/** Sessions holding acks back, flushed by one shared timer (not a timer per ack). */
const holdingAcks = new Set<PipeState>();
let ackTimer: ReturnType<typeof setTimeout> | undefined;

function holdAcks(pipe: PipeState): void {
  holdingAcks.add(pipe);
  ackTimer ??= setTimeout(() => {
    ackTimer = undefined;
    const due = [...holdingAcks];
    holdingAcks.clear();
    for (const p of due) p.flushAcks();
  }, ACK_HOLD_MS);
}

/**
 * What a pipelined session keeps beside the lock-step one: the serial
 * writer, the PETOs to answer, the chain of answers and the chain of acks,
 * and the commits in flight.
 */
class PipeState {
  readonly writer: SerialWriter;
  readonly #transport: Transport;
  /** PETOs read and not answered yet. */
  requests = 0;
  /** FINO was sent: every later PETO is answered FINO. */
  finoSent = false;
  /** The runner said `VICO/1 leave`: every PETO is answered FINO, and FINO ANKAU may come before any FINO. */
  leaving = false;
  /** The reading side ended. */
  closed = false;
  /** Why the answering side or a commit failed, if one did. */
  failure: unknown;
  /** Wakes the answering loop (a PETO came, or the session ends). */
  wake: () => void = () => {};
  /** The answers to PETOs, in order (each may wait for its assignment to be durable). */
  #replies: Promise<void> = Promise.resolve();
  /** Answers queued on that chain and not written yet. */
  #waiting = 0;
  /** Acks not written yet, in the order the results came: each goes out once it and all before it are committed. */
  readonly #acks: { bytes: Message; committed: boolean }[] = [];
  /** Where the first unwritten ack is in {@linkcode #acks} (the written ones before it are cut off now and then). */
  #ackHead = 0;
  /** Acks committed, in order, held back to ride with the next message (at most {@linkcode ACK_HOLD_MS}). */
  #ready: Message[] = [];
  /** Waiters for every ack so far to be written. */
  #ackWaiters: (() => void)[] = [];
  /** Commits of results read whole, not settled yet. */
  readonly commits = new Set<Promise<void>>();

  constructor(transport: Transport) {
    this.#transport = transport;
    this.writer = new SerialWriter(transport);
  }

  /** Writes one whole message now (a pulse), the acks held back first; a failed write ends the session. */
  send(bytes: Message): void {
    this.flushAcks();
    this.writer.write(bytes).catch((err) => this.fail(err));
  }

  /** Hands the acks held back to the writer (they go out in one write with what follows them this turn). */
  flushAcks(): void {
    if (this.#ready.length === 0) return;
    const ready = this.#ready;
    this.#ready = [];
    holdingAcks.delete(this);
    if (this.failure !== undefined) return;
    for (const bytes of ready) this.writer.write(bytes).catch((err) => this.fail(err));
    if (this.#ackHead === this.#acks.length) this.#wakeAckWaiters();
  }

  /** Queues the answer to the next PETO, after `before` (an assignment record) and every earlier answer. */
  reply(bytes: Message, before?: Promise<void>): void {
    if (before === undefined && this.#waiting === 0) {
      this.send(bytes); // the writer keeps the order
      return;
    }
    this.#waiting++;
    const prior = this.#replies;
    this.#replies = (async () => {
      await prior;
      await before;
      this.flushAcks();
      await this.writer.write(bytes);
    })().catch((err) => this.fail(err)).finally(() => this.#waiting--);
  }

  /** Queues a result's ack: written once `committed` resolves and every earlier ack is out. */
  ack(committed: Promise<void>, bytes: Message): void {
    this.commits.add(committed);
    const entry = { bytes, committed: false };
    this.#acks.push(entry);
    committed.then(() => {
      this.commits.delete(committed);
      entry.committed = true;
      this.#writeAcks();
    }, (err) => {
      this.commits.delete(committed);
      this.fail(err); // no later ack goes out: the connection closes
    });
  }

  /** Resolves once every ack queued so far is written, or once the session failed (see {@linkcode failure}). */
  async acked(): Promise<void> {
    if (this.failure === undefined && (this.#ackHead < this.#acks.length || this.#ready.length > 0)) {
      const written = new Promise<void>((resolve) => this.#ackWaiters.push(resolve));
      this.flushAcks(); // nothing more is coming to ride with
      await written;
    }
    await this.writer.drain();
  }

  /**
   * Moves the committed acks at the head of the queue, in order, to those
   * held back for the next message (or for the shared timer); with a
   * `FINO ANKAU` waiting for them, they go now.
   */
  #writeAcks(): void {
    if (this.failure !== undefined) return;
    const acks = this.#acks;
    const before = this.#ready.length;
    while (this.#ackHead < acks.length && acks[this.#ackHead].committed) this.#ready.push(acks[this.#ackHead++].bytes);
    if (this.#ready.length > before) {
      if (this.#ackWaiters.length > 0) this.flushAcks();
      else holdAcks(this);
    }
    if (this.#ackHead === acks.length) {
      acks.length = 0;
      this.#ackHead = 0;
      if (this.#ready.length === 0) this.#wakeAckWaiters();
    } else if (this.#ackHead > 1024) {
      acks.splice(0, this.#ackHead);
      this.#ackHead = 0;
    }
  }

  #wakeAckWaiters(): void {
    const waiters = this.#ackWaiters;
    this.#ackWaiters = [];
    for (const w of waiters) w();
  }

  /** Ends the session with `err` (the first failure wins): the reader sees the connection close. */
  fail(err: unknown): void {
    this.failure ??= err;
    this.#ready = [];
    holdingAcks.delete(this);
    this.#transport.close();
    this.#wakeAckWaiters(); // no more acks go out
  }
}
