/**
 * The runner's side of the text protocol, as the draft's client states:
 * Initialization (hail, version, KOMPRENAS), then N workers in WorkerLoop
 * sharing the one connection under a communication lock, each ending in
 * WaitClose; the last one answers `FINO ANKAU`.
 *
 * One pump reads every line the manager sends and hands it to the single
 * worker waiting for a reply (the lock guarantees there is at most one). A
 * line that nobody waits for, an `ERARO`, or the end of the connection ends
 * the session: running jobs are killed and the runner reports a failure.
 *
 * @module
 */

import type { BufferedReader } from "../protocol/buffered_reader.ts";
import { ProtocolError, VicoError } from "../protocol/errors.ts";
import type { RunnerExpectation, ToRunnerText } from "../protocol/messages.ts";
import { encodeLine, formatRunnerLine, isAcceptedVersion, parseManagerLine } from "../protocol/text_codec.ts";
import type { Transport } from "../transport/transport.ts";
import { logger } from "../util/log.ts";
import { Mutex } from "../util/mutex.ts";

/** The draft's client states (plus Closed). */
export type RunnerTextState = "Initialization" | "WorkerLoop" | "WaitClose" | "Closed";

/** A finished job: its status and its output, ready to stream. */
export interface JobOutcome {
  /** Exit status 0-255. */
  status: number;
  /** The output. */
  output: {
    /** Size in bytes. */
    readonly size: number;
    /** Streams the bytes. */
    pipeTo(sink: (chunk: Uint8Array) => Promise<void>): Promise<void>;
    /** Frees it once sent. */
    dispose(): Promise<void>;
  };
}

/** Runs one job to completion. Aborting `signal` must end it promptly. */
export type JobExecutor = (command: string, signal: AbortSignal) => Promise<JobOutcome>;

/** Options for {@linkcode RunnerTextClient}. */
export interface RunnerTextClientOptions {
  /** Name announced in the hail. */
  name: string;
  /** Workers sharing the connection. */
  workers: number;
  /** Runs jobs. */
  execute: JobExecutor;
}

/** How a runner session ended. */
export type RunnerEnd =
  | { readonly kind: "finished"; readonly jobs: number }
  | { readonly kind: "stopped"; readonly jobs: number }
  | { readonly kind: "refused"; readonly reason: string }
  | { readonly kind: "failed"; readonly reason: string; readonly jobs: number };

interface Waiter {
  expect: RunnerExpectation;
  resolve(msg: ToRunnerText): void;
  reject(err: unknown): void;
}

const log = logger("runner");
/** Rejects the reply a worker waits for when the runner stops gracefully. */
const STOPPED = new Error("runner stopped");
const PETO = encodeLine(formatRunnerLine({ kind: "peto" }));
const KOMPRENAS = encodeLine(formatRunnerLine({ kind: "komprenas" }));
const FINO_ANKAU = encodeLine(formatRunnerLine({ kind: "finoAnkau" }));

/** One connection to a manager, shared by N workers. */
export class RunnerTextClient {
  readonly #transport: Transport;
  readonly #reader: BufferedReader;
  readonly #options: RunnerTextClientOptions;
  readonly #lock = new Mutex();
  readonly #abort = new AbortController();
  #state: RunnerTextState = "Initialization";
  #waiter: Waiter | undefined;
  #masterStop = false;
  #finoReceived = false;
  #failure: unknown;
  #closing = false;
  #inWaitClose = 0;
  #jobsDone = 0;
  /** Jobs received and not yet reported. */
  #running = 0;
  #stopping = false;

  /**
   * @param transport Connection to the manager.
   * @param reader Reader over that connection.
   * @param options Name, workers and job execution.
   */
  constructor(transport: Transport, reader: BufferedReader, options: RunnerTextClientOptions) {
    this.#transport = transport;
    this.#reader = reader;
    this.#options = options;
  }

  /** Current state of the session. */
  get state(): RunnerTextState {
    return this.#state;
  }

  /**
   * Raises MASTERSTOP: workers take no new job; running ones finish and are
   * reported; then the connection closes and the session ends as "stopped".
   */
  stop(): void {
    this.#masterStop = true;
    this.#stopping = true;
    if (this.#running === 0) this.#endStopped();
  }

  /** Closes after a stop once nothing is left to report; a worker waiting for a reply is let go. */
  #endStopped(): void {
    if (this.#closing) return;
    this.#closing = true;
    this.#waiter?.reject(STOPPED);
    this.#waiter = undefined;
    this.#transport.close();
  }

  /** Ends the session now: running jobs are killed and the session fails. */
  abort(reason: string): void {
    this.#fail(new VicoError("CONNECTION_CLOSED", reason));
  }

  /** Runs the session to its end. Never rejects. */
  async run(): Promise<RunnerEnd> {
    if (this.#closing) return { kind: "stopped", jobs: 0 };
    const pump = this.#pump();
    try {
      const versio = await this.#request(
        encodeLine(formatRunnerLine({ kind: "hail", host: this.#options.name })),
        "versio",
      );
      if (versio.kind !== "versio" || !isAcceptedVersion(versio.version)) {
        const version = versio.kind === "versio" ? versio.version : "?";
        this.#close();
        return { kind: "refused", reason: `Manager speaks protocol version ${version}; this runner speaks 1.x` };
      }
      await this.#transport.write(KOMPRENAS);
      this.#state = "WorkerLoop";
      const workers = [];
      for (let i = 0; i < this.#options.workers; i++) workers.push(this.#worker(i + 1));
      await Promise.all(workers);
    } catch (err) {
      this.#fail(err);
    }
    this.#state = "Closed";
    this.#close();
    await pump;
    if (this.#failure !== undefined) {
      return { kind: "failed", reason: describe(this.#failure), jobs: this.#jobsDone };
    }
    return { kind: this.#stopping && !this.#finoReceived ? "stopped" : "finished", jobs: this.#jobsDone };
  }

  async #worker(id: number): Promise<void> {
    try {
      while (!this.#masterStop && this.#failure === undefined) {
        const reply = await this.#lock.run(() =>
          this.#masterStop || this.#failure !== undefined ? Promise.resolve(undefined) : this.#request(PETO, "job")
        );
        if (reply === undefined) break;
        if (reply.kind === "fino") {
          this.#finoReceived = true;
          this.#masterStop = true;
          break;
        }
        if (reply.kind !== "job") throw new ProtocolError("Expected a job or FINO", reply.kind);
        log.debug("Worker {id} runs {job}", { id, job: reply.name });
        this.#running++;
        try {
          const { status, output } = await this.#options.execute(reply.name, this.#abort.signal);
          try {
            if (this.#failure !== undefined) break;
            await this.#lock.run(() => this.#report(reply.name, status, output));
            this.#jobsDone++;
          } finally {
            await output.dispose();
          }
        } finally {
          this.#running--;
          if (this.#stopping && this.#running === 0) this.#endStopped();
        }
      }
    } catch (err) {
      if (err !== STOPPED) this.#fail(err);
    }
    await this.#waitClose();
  }

  async #report(job: string, status: number, output: JobOutcome["output"]): Promise<void> {
    const rezulto = formatRunnerLine({ kind: "rezulto", job, status, size: output.size });
    await this.#request(encodeLine(rezulto), "preta");
    // RICEVIS can only come after every output byte: wait for it from now on.
    const ricevis = this.#expect("ricevis");
    ricevis.catch(() => {});
    await output.pipeTo((chunk) => this.#transport.write(chunk));
    await ricevis;
  }

  async #waitClose(): Promise<void> {
    this.#inWaitClose++;
    if (this.#inWaitClose < this.#options.workers || this.#failure !== undefined) return;
    this.#state = "WaitClose";
    if (this.#finoReceived && !this.#closing) {
      try {
        await this.#lock.run(() => this.#transport.write(FINO_ANKAU));
      } catch (err) {
        this.#fail(err);
      }
    }
    this.#close();
  }

  #request(line: Uint8Array, expect: RunnerExpectation): Promise<ToRunnerText> {
    const reply = this.#expect(expect);
    this.#transport.write(line).catch((err) => this.#fail(err));
    return reply;
  }

  #expect(expect: RunnerExpectation): Promise<ToRunnerText> {
    if (this.#failure !== undefined) return Promise.reject(this.#failure);
    return new Promise((resolve, reject) => (this.#waiter = { expect, resolve, reject }));
  }

  async #pump(): Promise<void> {
    try {
      while (true) {
        const line = await this.#reader.readLine();
        if (line === null) {
          if (this.#closing) return;
          throw new VicoError("CONNECTION_CLOSED", "Manager closed the connection");
        }
        // The waiter stays registered until it is resolved, so that a failure
        // here (ERARO, a malformed line) rejects it in #fail.
        const waiter = this.#waiter;
        const msg = parseManagerLine(line, waiter?.expect ?? "job");
        if (msg.kind === "eraro") throw new VicoError("REFUSED", `Manager dropped this runner: ${msg.reason}`);
        if (waiter === undefined) throw new ProtocolError("Manager sent a line no worker asked for", line);
        this.#waiter = undefined;
        waiter.resolve(msg);
      }
    } catch (err) {
      if (!this.#closing) this.#fail(err);
    }
  }

  #fail(err: unknown): void {
    if (this.#failure !== undefined || this.#closing) return;
    this.#failure = err;
    this.#masterStop = true;
    this.#waiter?.reject(err);
    this.#waiter = undefined;
    this.#abort.abort();
    this.#close();
  }

  #close(): void {
    this.#closing = true;
    this.#transport.close();
  }
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
