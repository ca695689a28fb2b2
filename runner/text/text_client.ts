/**
 * One text-protocol connection from a runner to its manager: the draft's
 * Initialization (hail, version, KOMPRENAS; after the vico extension's hello,
 * see `extension_hello.ts`, when both sides speak it), the communication lock the workers share, and
 * WaitClose, where the last worker answers `FINO ANKAU`. The workers
 * themselves (WorkerLoop) live in the {@linkcode Runner}, so that with
 * `--persist` they and their jobs outlive a connection.
 *
 * One pump reads every line the manager sends and hands it to the single
 * worker waiting for a reply (the lock guarantees there is at most one). A
 * line that nobody waits for, an `ERARO`, the end of the connection, or (with
 * pulses) a silent manager ends the connection; every pending call fails.
 *
 * With the extension's `pipe` feature (docs/protocol.md, "Pipelined text
 * exchange") there is no communication lock: a write lock keeps each
 * message whole, {@linkcode RunnerTextClient.request} sends `PETO` at once
 * and the pump hands the answers to the waiting requests in order, and
 * {@linkcode RunnerTextClient.sendResult} sends a result without waiting
 * for `PRETA`; its `VICO/1 ack <tag>` settles the delivery later. That mode
 * is the "Pipelined exchange" part of the class.
 *
 * @module
 */

import { awakeInterval } from "../../util/awake_interval.ts";
import type { BufferedReader } from "../../protocol/buffered_reader.ts";
import { ProtocolError, VicoError } from "../../core/errors.ts";
import type { RunnerExpectation, ToRunnerText } from "../../protocol/messages.ts";
import { encodeLine, formatRunnerLine, isAcceptedVersion, parseManagerLine } from "../../protocol/text_codec.ts";
import {
  ACK_TAG_PREFIX,
  BACK_TAG_PREFIX,
  JOB_TAG_PREFIX,
  LEAVE_LINE,
  parseAck,
  PULSE_LINE,
  RESULT_TAG_PREFIX,
  RUNNER_SILENT_PULSES,
  splitJobSeq,
} from "../../protocol/vico_extension.ts";
import type { Transport } from "../../transport/transport.ts";
import { Mutex } from "../../util/mutex.ts";
import { concatBytes } from "../../io/concat_bytes.ts";
import type { Streamable } from "../service/runner_state.ts";

/** The draft's client states (plus Closed). */
export type RunnerTextState = "Initialization" | "WorkerLoop" | "WaitClose" | "Closed";

/** Options for {@linkcode RunnerTextClient}. */
export interface RunnerTextClientOptions {
  /** Name announced in the hail. */
  name: string;
  /** Workers sharing the connection (the last of them answers FINO ANKAU). */
  workers: number;
  /** What the vico extension's exchange agreed, if it took place: pulses, job timeout, tags. */
  extension?: { pulseSec: number; timeoutMs?: number; tagged?: boolean; pipe?: boolean; ahead?: boolean };
}

/** How opening a connection went. */
export type OpenResult =
  | {
    readonly kind: "open";
    readonly extension: boolean;
    readonly pulseSec: number;
    readonly timeoutMs?: number;
    /** The exchange is pipelined (`pipe=1`). */
    readonly pipe?: boolean;
  }
  /** The manager refused this runner (another protocol version). */
  | { readonly kind: "refused"; readonly reason: string }
  | { readonly kind: "failed"; readonly reason: string };

/** How a connection ended. */
export type ConnectionEnd =
  | { readonly kind: "goodbye" }
  | { readonly kind: "stopped" }
  | { readonly kind: "failed"; readonly reason: string; readonly error: unknown };

/** A worker waiting for the manager's next line, parsed as `expect`. */
/** A job handed out: its command line, and with the `tag` feature the tag of its hand-out. */
export interface HandedJob {
  /** The command line. */
  readonly command: string;
  /** `run=… key=… attempt=…` (opaque to the runner: echoed with its result). */
  readonly tag?: string;
  /** Its line in the manager's list (a template's `{#}`), when the manager said (`seq=`): the job's `VICO_SEQ`. */
  readonly seq?: number;
}

/** A pipelined `PETO` waiting for its answer (abandoned: the runner stopped; its answer is ignored). */
interface JobWaiter {
  resolve(job: HandedJob | null): void;
  reject(err: unknown): void;
  abandoned?: boolean;
}

/** A pipelined result waiting for its ack. */
interface AckWaiter {
  readonly tag: string;
  resolve(): void;
  reject(err: unknown): void;
}

interface Waiter {
  expect: RunnerExpectation;
  resolve(reply: ToRunnerText): void;
  reject(err: unknown): void;
}

/** Rejects the reply a worker waits for when the runner stops gracefully. */
export const STOPPED: Error = new Error("runner stopped");

const PETO = encodeLine(formatRunnerLine({ kind: "peto" }));
const KOMPRENAS = encodeLine(formatRunnerLine({ kind: "komprenas" }));
const FINO_ANKAU = encodeLine(formatRunnerLine({ kind: "finoAnkau" }));
const PULSE = encodeLine(PULSE_LINE);

/** One connection to a manager, shared by N workers. */
export class RunnerTextClient {
  readonly #transport: Transport;
  readonly #reader: BufferedReader;
  readonly #options: RunnerTextClientOptions;
  readonly #lock = new Mutex();
  readonly #writeLock = new Mutex();
  #state: RunnerTextState = "Initialization";
  #waiter: Waiter | undefined;
  #finoReceived = false;
  #stopping = false;
  /** Pipelined: `VICO/1 leave` was sent (the manager answers every PETO FINO, and takes FINO ANKAU). */
  #left = false;
  #closing = false;
  #arrived = 0;
  #reporting = 0;
  #pulseSec = 0;
  #tagged = false;
  /** The tag line read just before the job line now awaited. */
  #jobTag: string | undefined;
  /** Pipelined exchange (`pipe=1`): PETOs awaiting their answers and results awaiting their acks, oldest first. */
  #pipe = false;
  readonly #jobWaiters: JobWaiter[] = [];
  readonly #ackWaiters: AckWaiter[] = [];
  readonly #unacked = new Set<Promise<void>>();
  #lastHeard = performance.now();
  /** Ends the pulses and the watch on the manager's silence. */
  #stopPulses: (() => void) | undefined;
  #pump: Promise<void> | undefined;
  #resolveEnded!: (end: ConnectionEnd) => void;
  /** Settles once when the connection is over. */
  readonly ended: Promise<ConnectionEnd>;

  /**
   * @param transport Connection to the manager.
   * @param reader Reader over that connection.
   * @param options Name, workers, extension.
   */
  constructor(transport: Transport, reader: BufferedReader, options: RunnerTextClientOptions) {
    this.#transport = transport;
    this.#reader = reader;
    this.#options = options;
    this.ended = new Promise((resolve) => (this.#resolveEnded = resolve));
  }

  /** Current state. */
  get state(): RunnerTextState {
    return this.#state;
  }

  /** Whether the manager said FINO on this connection (MASTERSTOP). */
  get finoReceived(): boolean {
    return this.#finoReceived;
  }

  /** Whether the connection is over. */
  get closed(): boolean {
    return this.#closing;
  }

  /** Initialization (after the extension's exchange, if any): hail, VERSIO, KOMPRENAS. */
  async open(): Promise<OpenResult> {
    this.#pump = this.#runPump();
    const ext = this.#options.extension;
    const pulseSec = ext?.pulseSec ?? 0;
    const timeoutMs = ext?.timeoutMs;
    try {
      const versio = await this.#request(
        encodeLine(formatRunnerLine({ kind: "hail", host: this.#options.name })),
        "versio",
      );
      if (versio.kind !== "versio" || !isAcceptedVersion(versio.version)) {
        const version = versio.kind === "versio" ? versio.version : "?";
        this.#end({ kind: "stopped" });
        return { kind: "refused", reason: `Manager speaks protocol version ${version}; this runner speaks 1.x` };
      }
      await this.#write(KOMPRENAS);
    } catch (err) {
      this.#fail(err);
      return { kind: "failed", reason: describe(err) };
    }
    this.#state = "WorkerLoop";
    this.#pulseSec = pulseSec;
    this.#tagged = ext?.tagged ?? false;
    this.#pipe = this.#tagged && (ext?.pipe ?? false);
    if (pulseSec > 0) this.#startPulses(pulseSec);
    return { kind: "open", extension: ext !== undefined, pulseSec, timeoutMs, pipe: this.#pipe };
  }

  /** WorkerLoop: asks for a job under the lock. Resolves with the job, or `null` for FINO. */
  request(): Promise<HandedJob | null> {
    if (this.#pipe) return this.#requestPiped();
    return this.#lock.run(async () => {
      if (this.#finoReceived || this.#stopping) return null;
      const reply = await this.#request(PETO, "job");
      const tagged = this.#jobTag === undefined ? undefined : splitJobSeq(this.#jobTag);
      const tag = tagged?.tag;
      this.#jobTag = undefined;
      if (reply.kind === "fino") {
        if (tag !== undefined) throw new ProtocolError("FINO after a job tag");
        this.#finoReceived = true;
        return null;
      }
      if (reply.kind !== "job") throw new ProtocolError("Expected a job or FINO", reply.kind);
      if (this.#tagged && tag === undefined) throw new ProtocolError("Job without its tag line", reply.name);
      if (tag === undefined) return { command: reply.name };
      return tagged?.seq === undefined ? { command: reply.name, tag } : { command: reply.name, tag, seq: tagged.seq };
    });
  }

  /** WorkerLoop: reports a finished job under the lock: REZULTO, PRETA, the output, RICEVIS. */
  report(job: HandedJob, status: number, output: Streamable, timedOut = false): Promise<void> {
    if (this.#pipe) return this.sendResult(job, status, output, timedOut).then(({ acked }) => acked);
    return this.#lock.run(async () => {
      this.#reporting++;
      try {
        if (this.#tagged && job.tag !== undefined) {
          await this.#write(encodeLine(RESULT_TAG_PREFIX + job.tag + (timedOut ? " timedout=1" : "")));
        }
        const rezulto = formatRunnerLine({ kind: "rezulto", job: job.command, status, size: output.size });
        await this.#request(encodeLine(rezulto), "preta");
        // RICEVIS can only come after every output byte: wait for it from now on.
        const ricevis = this.#expect("ricevis");
        ricevis.catch(() => {});
        try {
          await this.#writeLock.run(() => output.pipeTo((chunk) => this.#transport.write(chunk)));
        } catch (err) {
          // The manager waits for the rest of the announced bytes: whatever
          // went out next on this connection would be read as them.
          this.#fail(err);
          throw err;
        }
        await ricevis;
      } finally {
        this.#reporting--;
      }
    });
  }

  /**
   * WaitClose: a worker is done with this connection. The last of the N
   * answers FINO ANKAU (after a FINO) and closes. Resolves when the
   * connection is over.
   */
  async arriveWaitClose(): Promise<ConnectionEnd> {
    if (++this.#arrived >= this.#options.workers && !this.#closing) {
      this.#state = "WaitClose";
      // Pipelined: FINO ANKAU only once every result sent is acknowledged.
      if (this.#pipe) await Promise.allSettled([...this.#unacked]);
      if (this.#closing) return await this.ended;
      if (this.#finoReceived || this.#left) {
        try {
          await this.#lock.run(() => this.#write(FINO_ANKAU));
          // Left: a stop, though the manager may have jobs still.
          this.#end({ kind: this.#left ? "stopped" : "goodbye" });
        } catch (err) {
          this.#fail(err);
        }
      } else {
        this.#end({ kind: "stopped" });
      }
    }
    return await this.ended;
  }

  /**
   * Raises MASTERSTOP on this connection: no new PETO; a worker waiting for
   * a job's reply is let go. Pipelined, the manager is told (`VICO/1
   * leave`): it answers every PETO FINO, and each job that still comes is
   * given back unstarted ({@linkcode giveBack}), so none is counted lost.
   */
  stop(): void {
    if (this.#stopping) return;
    this.#stopping = true;
    // After a FINO every PETO is answered FINO anyway: nothing can be on its way.
    if (this.#pipe && !this.#finoReceived && !this.#closing && this.#state !== "Initialization") {
      this.#left = true;
      this.#write(encodeLine(LEAVE_LINE)).catch((err) => this.#fail(err));
      return;
    }
    for (const w of this.#jobWaiters) {
      if (w.abandoned) continue;
      w.abandoned = true;
      w.reject(STOPPED);
    }
    const waiter = this.#waiter;
    if (waiter?.expect === "job") {
      this.#waiter = undefined;
      waiter.reject(STOPPED);
    }
  }

  /**
   * Gives a job back unstarted (pipelined, once stopping): the manager puts
   * it back in its queue without counting it lost. Resolves once written.
   */
  async giveBack(job: HandedJob): Promise<void> {
    if (!this.#left || job.tag === undefined) {
      throw new ProtocolError("Only a pipelined runner that left gives jobs back");
    }
    try {
      await this.#write(encodeLine(BACK_TAG_PREFIX + job.tag));
    } catch (err) {
      this.#fail(err);
      throw err;
    }
  }

  /** Whether this connection gives jobs back unstarted (see {@linkcode stop}). */
  get givesBack(): boolean {
    return this.#left;
  }

  /** Ends the connection now (calls in flight fail). */
  abort(reason: string): void {
    this.#fail(new VicoError("CONNECTION_CLOSED", reason));
  }

  #request(line: Uint8Array, expect: RunnerExpectation): Promise<ToRunnerText> {
    const reply = this.#expect(expect);
    this.#write(line).catch((err) => this.#fail(err));
    return reply;
  }

  #expect(expect: RunnerExpectation): Promise<ToRunnerText> {
    if (this.#closing) return Promise.reject(new VicoError("CONNECTION_CLOSED", "Connection is closed"));
    return new Promise((resolve, reject) => (this.#waiter = { expect, resolve, reject }));
  }

  #write(bytes: Uint8Array): Promise<void> {
    return this.#writeLock.run(() => this.#transport.write(bytes));
  }

  #startPulses(sec: number): void {
    const pulse = () => {
      // Never between a REZULTO and the end of its output: the manager reads raw bytes then.
      if (this.#reporting === 0) this.#write(PULSE).catch((err) => this.#fail(err));
    };
    this.#stopPulses = awakeInterval(sec * 1000, () => {
      if (performance.now() - this.#lastHeard > sec * RUNNER_SILENT_PULSES * 1000) {
        this.#fail(new VicoError("CONNECTION_CLOSED", `Manager silent for ${sec * RUNNER_SILENT_PULSES}s (no pulse)`));
        return;
      }
      pulse();
    }, () => {
      // This runner was not running: what the manager sent waits unread; it pulses now and judges later.
      this.#lastHeard = performance.now();
      pulse();
    });
  }

  async #runPump(): Promise<void> {
    try {
      while (true) {
        const line = await this.#reader.readLine();
        if (line === null) {
          if (this.#closing) return;
          throw new VicoError("CONNECTION_CLOSED", "Manager closed the connection");
        }
        this.#lastHeard = performance.now();
        if (this.#pulseSec > 0 && line === PULSE_LINE) continue;
        if (this.#pipe) {
          this.#pipeLine(line);
          continue;
        }
        const waiter = this.#waiter;
        if (this.#tagged && waiter?.expect === "job" && line.startsWith(JOB_TAG_PREFIX)) {
          if (this.#jobTag !== undefined) throw new ProtocolError("Two job tags in a row", line);
          this.#jobTag = line.slice(JOB_TAG_PREFIX.length);
          continue;
        }
        // The waiter stays registered until it is resolved, so that a failure
        // here (ERARO, a malformed line) rejects it in #fail.
        const msg = parseManagerLine(line, waiter?.expect ?? "job");
        if (msg.kind === "eraro") throw new VicoError("REFUSED", `Manager dropped this runner: ${msg.reason}`);
        if (waiter === undefined) throw new ProtocolError("Manager sent a line no worker asked for", line);
        this.#waiter = undefined;
        waiter.resolve(msg);
      }
    } catch (err) {
      this.#fail(err);
    }
  }

  #fail(err: unknown): void {
    this.#end({ kind: "failed", reason: describe(err), error: err });
  }

  #end(end: ConnectionEnd): void {
    if (this.#closing) return;
    this.#closing = true;
    this.#state = "Closed";
    this.#stopPulses?.();
    const waiter = this.#waiter;
    this.#waiter = undefined;
    const why = end.kind === "failed" ? end.error : new VicoError("CONNECTION_CLOSED", "Connection is closed");
    waiter?.reject(why);
    for (const w of this.#jobWaiters.splice(0)) if (!w.abandoned) w.reject(why);
    for (const w of this.#ackWaiters.splice(0)) w.reject(why);
    this.#transport.close();
    this.#resolveEnded(end);
  }

  // ---------------------------------------------------------------------------
  // Pipelined exchange (`pipe=1`)
  // ---------------------------------------------------------------------------

  /** Whether this connection speaks the pipelined exchange. */
  get pipelined(): boolean {
    return this.#pipe;
  }

  /** Whether a busy worker may ask for its next job ahead (pipelined, and the manager did not say `ahead=0`). */
  get asksAhead(): boolean {
    return this.#pipe && this.#options.extension?.ahead !== false;
  }

  /** Sends a PETO now; its answer (a job, or `null` for FINO) comes in the order the PETOs went. */
  #requestPiped(): Promise<HandedJob | null> {
    if (this.#finoReceived || this.#stopping) return Promise.resolve(null);
    if (this.#closing) return Promise.reject(new VicoError("CONNECTION_CLOSED", "Connection is closed"));
    return new Promise((resolve, reject) => {
      this.#jobWaiters.push({ resolve, reject });
      this.#write(PETO).catch((err) => this.#fail(err));
    });
  }

  /**
   * Sends a result whole (tag line, `REZULTO`, the output at once, no
   * `PRETA`). Resolves once it is written, with `acked`, which resolves on
   * its `VICO/1 ack` and rejects if the connection ends first. Only with
   * `pipe=1` (use {@linkcode report} otherwise).
   */
  sendResult(
    job: HandedJob,
    status: number,
    output: Streamable,
    timedOut = false,
    ask = false,
  ): Promise<{ acked: Promise<void>; next?: Promise<HandedJob | null> }> {
    return this.#writeLock.run(async () => {
      if (!this.#pipe || job.tag === undefined) throw new ProtocolError("A pipelined result needs pipe=1 and a tag");
      if (this.#closing) throw new VicoError("CONNECTION_CLOSED", "Connection is closed");
      const tag = job.tag;
      const acked = new Promise<void>((resolve, reject) => this.#ackWaiters.push({ tag, resolve, reject }));
      this.#unacked.add(acked);
      const forget = () => void this.#unacked.delete(acked);
      acked.then(forget, forget);
      // The next PETO goes right behind the result, in the same write (as request() would send it a moment later).
      const next = ask && !this.#finoReceived && !this.#stopping
        ? new Promise<HandedJob | null>((resolve, reject) => this.#jobWaiters.push({ resolve, reject }))
        : undefined;
      next?.catch(() => {});
      const rezulto = formatRunnerLine({ kind: "rezulto", job: job.command, status, size: output.size });
      const head = encodeLine(`${RESULT_TAG_PREFIX}${tag}${timedOut ? " timedout=1" : ""}\n${rezulto}`);
      try {
        if (output.size <= ONE_WRITE_BYTES) {
          // A small result is one write: its lines, its bytes, and the PETO.
          const parts: Uint8Array[] = [head];
          await output.pipeTo((chunk) => {
            parts.push(chunk.slice());
            return Promise.resolve();
          });
          if (next !== undefined) parts.push(PETO);
          await this.#transport.write(concatBytes(parts));
        } else {
          await this.#transport.write(head);
          await output.pipeTo((chunk) => this.#transport.write(chunk));
          if (next !== undefined) await this.#transport.write(PETO);
        }
      } catch (err) {
        this.#fail(err);
        throw err;
      }
      return next === undefined ? { acked } : { acked, next };
    });
  }

  /** The pump, pipelined: job answers go to the oldest PETO, acks to the oldest result. */
  #pipeLine(line: string): void {
    if (line.startsWith(ACK_TAG_PREFIX)) {
      parseAck(line);
      const head = this.#ackWaiters[0];
      if (head === undefined || head.tag !== line.slice(ACK_TAG_PREFIX.length)) {
        throw new ProtocolError("Manager acknowledged a result that is not the next one waiting", line);
      }
      this.#ackWaiters.shift();
      head.resolve();
      return;
    }
    if (line.startsWith(JOB_TAG_PREFIX)) {
      if (this.#jobTag !== undefined) throw new ProtocolError("Two job tags in a row", line);
      if (this.#jobWaiters.length === 0) throw new ProtocolError("Manager sent a job no PETO asked for", line);
      this.#jobTag = line.slice(JOB_TAG_PREFIX.length);
      return;
    }
    const msg = parseManagerLine(line, "job");
    if (msg.kind === "eraro") throw new VicoError("REFUSED", `Manager dropped this runner: ${msg.reason}`);
    const waiter = this.#jobWaiters.shift();
    if (waiter === undefined) throw new ProtocolError("Manager sent a line no worker asked for", line);
    const tagged = this.#jobTag === undefined ? undefined : splitJobSeq(this.#jobTag);
    this.#jobTag = undefined;
    if (msg.kind === "fino") {
      if (tagged !== undefined) throw new ProtocolError("FINO after a job tag");
      this.#finoReceived = true;
      if (!waiter.abandoned) waiter.resolve(null);
      return;
    }
    if (msg.kind !== "job") throw new ProtocolError("Expected a job, FINO or an ack", msg.kind);
    if (tagged === undefined) throw new ProtocolError("Job without its tag line", msg.name);
    // A job answering a PETO given up (the runner is stopping) is not run: the manager gets it back at the close.
    if (waiter.abandoned) return;
    if (this.#left) {
      // Asked for before the stop: handed back unstarted, and the worker is let go.
      this.giveBack({ command: msg.name, tag: tagged.tag }).catch(() => {});
      waiter.resolve(null);
      return;
    }
    waiter.resolve(
      tagged.seq === undefined
        ? { command: msg.name, tag: tagged.tag }
        : { command: msg.name, tag: tagged.tag, seq: tagged.seq },
    );
  }

  /** Waits for the pump to stop (after the connection ended). */
  async finished(): Promise<void> {
    await this.#pump;
  }
}

/** Largest result {@linkcode RunnerTextClient.sendResult} sends in one write. */
const ONE_WRITE_BYTES = 64 * 1024;

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
