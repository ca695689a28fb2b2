/**
 * The manager's side of one text-protocol connection, as the draft's server
 * state machine: Accept → Wait ⇄ SendJob / ProcessJob → WaitClose.
 *
 * One session per connection; a session that fails (protocol error, closed
 * socket, full disk) drops its runner with a reason and hands its jobs back
 * to the scheduler. It never throws to its caller.
 *
 * @module
 */

import type { BufferedReader } from "../protocol/buffered_reader.ts";
import { ProtocolError, VicoError } from "../protocol/errors.ts";
import type { Limits } from "../protocol/limits.ts";
import { type FromRunnerText, TEXT_PROTOCOL_VERSION } from "../protocol/messages.ts";
import { encodeLine, formatManagerLine, parseRunnerLine } from "../protocol/text_codec.ts";
import type { Transport } from "../transport/transport.ts";
import { logger, LogRateLimit } from "../util/log.ts";
import { settlesWithin } from "../util/timeout.ts";
import type { JobClass, JobList } from "./job_list.ts";
import type { ResultRecorder } from "./result_recorder.ts";
import type { ResultsStore } from "./results_store.ts";
import type { RunnerLink, Scheduler } from "./scheduler.ts";
import type { HandshakeWindow } from "./server.ts";

/** The draft's server states (plus Closed, after the connection ends). */
export type ManagerTextState = "Accept" | "Wait" | "SendJob" | "ProcessJob" | "WaitClose" | "Closed";

/** What a text session needs from the manager around it. */
export interface TextSessionContext {
  /** Hands out jobs. */
  readonly scheduler: Scheduler;
  /** Stores results. */
  readonly results: ResultsStore;
  /** The job list (job `i` is `commands[i]`). */
  readonly jobs: JobList;
  /** Records results. */
  readonly recorder: ResultRecorder;
  /** Wire limits. */
  readonly limits: Limits;
  /** A runner sending output that makes no progress for this long is dropped. */
  readonly transferIdleTimeoutMs: number;
}

const log = logger("manager");
const handshakeFailures = new LogRateLimit(5, 10_000);
const FINO = encodeLine(formatManagerLine({ kind: "fino" }));
const PRETA = encodeLine(formatManagerLine({ kind: "preta" }));
const RICEVIS = encodeLine(formatManagerLine({ kind: "ricevis" }));
const VERSIO = encodeLine(formatManagerLine({ kind: "versio", version: TEXT_PROTOCOL_VERSION }));

/** Reply to a pending job request: a job number, or -1 for FINO. */
type Reply = (job: number) => void;

/** One runner connection speaking the text protocol. */
export class ManagerTextSession implements RunnerLink {
  /** Host name from the hail (empty until then). */
  host = "";
  /** The runner's address. */
  readonly peer: string;
  readonly #transport: Transport;
  readonly #reader: BufferedReader;
  readonly #ctx: TextSessionContext;
  readonly #handshake: HandshakeWindow;
  #state: ManagerTextState = "Accept";
  #joined = false;
  #reply: Reply | undefined;
  readonly #handedOutAt = new Map<number, string>();

  /**
   * @param transport The connection.
   * @param reader The connection's reader (the server already peeked at it).
   * @param ctx The manager around this session.
   */
  constructor(transport: Transport, reader: BufferedReader, ctx: TextSessionContext, handshake: HandshakeWindow) {
    this.#transport = transport;
    this.#reader = reader;
    this.#ctx = ctx;
    this.#handshake = handshake;
    this.peer = transport.peer;
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
  assign(job: number): void {
    this.#answer(job);
  }

  /** Scheduler's answer to the pending PETO: no more jobs. */
  release(): void {
    this.#answer(-1);
  }

  /** Jobs remain, but only for binary nodes: FINO as well. */
  refuse(): void {
    this.#answer(-1);
  }

  #answer(job: number): void {
    const reply = this.#reply;
    this.#reply = undefined;
    reply?.(job);
  }

  /** Serves the connection until it closes. Never rejects. */
  async run(): Promise<void> {
    const peer = this.#transport.peer;
    try {
      await this.#accept();
      log.debug("Runner {host} joined from {peer}", { host: this.host, peer });
      if (await this.#serve()) log.debug("Runner {host} ({peer}) finished cleanly", { host: this.host, peer });
    } catch (err) {
      await this.#reportFailure(err);
    } finally {
      this.#state = "Closed";
      if (this.#joined) this.#ctx.scheduler.onRunnerLost(this);
      this.#transport.close();
    }
  }

  /** Closes the connection (the session then ends and gives its jobs back). */
  close(): void {
    this.#transport.close();
  }

  async #accept(): Promise<void> {
    // The server closes the connection if this does not finish in its window.
    const hail = await this.#next();
    if (hail.kind !== "hail") throw new ProtocolError("Expected the hail SALUTON; MI <HOSTNAME>", hail.kind);
    this.host = hail.host;
    await this.#transport.write(VERSIO);
    const ack = await this.#next();
    if (ack.kind !== "komprenas") throw new ProtocolError("Expected KOMPRENAS after VERSIO", ack.kind);
    this.#handshake.done();
    this.#joined = true;
    this.#ctx.scheduler.onRunnerJoined(this);
    this.#state = "Wait";
  }

  /** Runs states Wait to WaitClose; true when the runner said FINO ANKAU. */
  async #serve(): Promise<boolean> {
    let from: "Wait" | "WaitClose" = "Wait";
    let result: Extract<FromRunnerText, { kind: "rezulto" }> | undefined;
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
          const job = await this.#requestJob();
          if (job === -1) {
            await this.#transport.write(FINO);
            this.#state = "WaitClose";
          } else {
            this.#handedOutAt.set(job, new Date().toISOString());
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

  #requestJob(): Promise<number> {
    return new Promise<number>((resolve, reject) => {
      this.#reply = resolve;
      this.#ctx.scheduler.onJobRequest(this);
      if (this.#reply !== resolve) return;
      // Held: the runner sends nothing until answered, so any byte or the end
      // of the stream means it is gone (or broken); never hand it a job then.
      this.#reader.peekU8().then((byte) => {
        if (this.#reply !== resolve) return;
        this.#reply = undefined;
        reject(
          byte === null
            ? new VicoError("CONNECTION_CLOSED", "Runner closed the connection while waiting for a job")
            : new ProtocolError("Runner sent data while waiting for a job"),
        );
      }, reject);
    });
  }

  async #processJob(msg: Extract<FromRunnerText, { kind: "rezulto" }>): Promise<void> {
    const { scheduler, results, jobs, limits } = this.#ctx;
    const job = scheduler.claimResult(this, (j) => jobs.commands[j] === msg.job);
    if (job === undefined) {
      throw new ProtocolError("REZULTO for a job this runner does not hold", msg.job);
    }
    if (msg.size > limits.maxOutputBytes) {
      throw new ProtocolError(`Output of ${msg.size} bytes exceeds the limit of ${limits.maxOutputBytes}`);
    }
    await this.#transport.write(PRETA);
    const output = results.stageOutput();
    // A runner that stops sending mid-output would hold its job forever.
    const idleMs = this.#ctx.transferIdleTimeoutMs;
    let lastProgress = performance.now();
    let stalled = false;
    const watchdog = setInterval(() => {
      if (performance.now() - lastProgress < idleMs) return;
      stalled = true;
      this.#transport.close();
    }, Math.max(10, idleMs / 4));
    try {
      await this.#reader.pipeExact(msg.size, (chunk) => {
        lastProgress = performance.now();
        return output.write(chunk);
      });
    } catch (err) {
      await output.discard();
      if (stalled) {
        throw new VicoError(
          "CONNECTION_CLOSED",
          `Runner sent no output for ${idleMs / 1000}s in the middle of a result`,
        );
      }
      throw err;
    } finally {
      clearInterval(watchdog);
    }
    await this.#ctx.recorder.record(job, {
      link: this,
      rank: 1,
      status: msg.status,
      handedOutAt: this.#handedOutAt.get(job) ?? new Date().toISOString(),
      output,
      returned: [],
    });
    this.#handedOutAt.delete(job);
    await this.#transport.write(RICEVIS);
  }

  async #next(): Promise<FromRunnerText> {
    const line = await this.#reader.readLine();
    if (line === null) throw new VicoError("CONNECTION_CLOSED", "Runner closed the connection");
    return parseRunnerLine(line);
  }

  async #reportFailure(err: unknown): Promise<void> {
    const who = this.host ? `${this.host} (${this.#transport.peer})` : this.#transport.peer;
    const held = this.#joined ? this.#ctx.scheduler.jobsOf(this).size : 0;
    const jobs = held > 0 ? `; ${held} job(s) go back to the queue` : "";
    // Connections that never completed a handshake may be a flood: their
    // reasons are logged at a bounded rate.
    const unjoined = !this.#joined;
    const gate = unjoined ? handshakeFailures.allow() : { log: true, suppressed: 0 };
    if (gate.suppressed > 0) log.warn("{n} more failed handshake(s) were not logged", { n: gate.suppressed });
    if (err instanceof ProtocolError) {
      if (gate.log) {
        log.warn("Dropping runner {who} in state {state}: {reason}{jobs}", {
          who,
          state: this.#state,
          reason: err.message,
          jobs,
        });
      }
      // Tell the runner why, best effort: it may already be gone or not reading.
      const eraro = encodeLine(formatManagerLine({ kind: "eraro", reason: err.message }));
      await settlesWithin(this.#transport.write(eraro), 1000);
    } else if (err instanceof VicoError && err.code === "CONNECTION_CLOSED") {
      if (!gate.log) return;
      const level = held > 0 || this.#state !== "WaitClose" ? "warn" : "info";
      log[level]("Lost runner {who} in state {state}: {reason}{jobs}", {
        who,
        state: this.#state,
        reason: err.message,
        jobs,
      });
    } else {
      const reason = err instanceof Error ? err.message : String(err);
      log.error("Runner {who} failed in state {state}: {reason}{jobs}", { who, state: this.#state, reason, jobs });
    }
  }
}
