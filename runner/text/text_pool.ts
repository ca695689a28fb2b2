/**
 * The text protocol's side of a runner: N long-lived workers (the draft's
 * WorkerLoop) share one connection at a time, which a connection loop keeps
 * open. Without `persist`, losing the manager kills the running jobs and
 * ends the runner. With `persist` the runner is a service: jobs keep running
 * while the manager is gone, their results wait in the state directory, and
 * the runner reconnects, announces what it holds, delivers what finished,
 * and carries on; an empty queue only means waiting for the next one. What
 * follows each connection's outcome is the reconnect policy's
 * (`runner/connect/reconnect_policy.ts`).
 *
 * @module
 */

import { BufferedReader } from "../../protocol/buffered_reader.ts";
import type { Limits } from "../../core/limits.ts";
import { logger } from "../../util/log.ts";
import { PIPE_FEATURE, TAG_FEATURE } from "../../protocol/vico_extension.ts";
import { stoppedWithIt } from "../../core/executed_job.ts";
import { JobExecutor } from "../exec/job_executor.ts";
import { STATUS_RUNNER_FAILURE } from "../exec/process_runner.ts";
import {
  MAX_DELIVERY_FAILURES,
  type RunnerState,
  type StoredResult,
  type Streamable,
} from "../service/runner_state.ts";
import { sayHello } from "../connect/extension_hello.ts";
import type { ManagerLink } from "../connect/manager_link.ts";
import type { Happened, Reconnect } from "../connect/reconnect.ts";
import type { Transport } from "../../transport/transport.ts";
import type { PoolState, RunnerEnd, RunnerOptions } from "../runner_options.ts";
import {
  type ConnectionEnd,
  type HandedJob,
  RunnerTextClient,
  type RunnerTextClientOptions,
  STOPPED,
} from "./text_client.ts";

/** A job that ended, with its output, waiting to be reported. */
interface Finished {
  job: HandedJob;
  status: number;
  output: Streamable & { dispose(): Promise<void> };
  /** It was its --timeout. */
  timedOut?: boolean;
  /** It died of a stop signal from outside (see `ExecutedJob.stopSignal`). */
  stopSignal?: boolean;
  /** It did not run: its record could not be written (see `ExecutedJob.unrecorded`). */
  unrecorded?: string;
}

/** A short output held in memory: the note a runner sends in place of a job's output. */
function noteOutput(text: string): Streamable {
  const bytes = new TextEncoder().encode(text);
  return { size: bytes.length, pipeTo: (sink) => sink(bytes) };
}

const log = logger("runner");

/**
 * A pipelined worker whose last job ran shorter than this asks for its next
 * job as it starts one (one job ahead), so the next is there when this one
 * ends: with short jobs the round trip to the manager is otherwise most of
 * the time between two jobs. A worker on longer jobs asks only once its job
 * has ended, so no job waits behind a long one while another runner idles.
 */
export const PREFETCH_BELOW_MS = 100;

/** A pipelined PETO a worker sent: the connection it went on, and its answer. */
interface Ask {
  readonly client: RunnerTextClient;
  readonly next: Promise<HandedJob | null>;
}

/**
 * A text runner's workers and its connection loop.
 *
 * @example
 * ```ts ignore
 * const link = new ManagerLink({ hostname: "127.0.0.1", port: 7707 });
 * const end = await new TextPool({ hostname: "127.0.0.1", port: 7707, workers: 4 }, limits, link).run({});
 * ```
 */
export class TextPool {
  readonly #options: RunnerOptions;
  readonly #limits: Limits;
  readonly #link: ManagerLink;
  readonly #jobsAbort = new AbortController();
  #client: RunnerTextClient | undefined;
  #clientWaiters: (() => void)[] = [];
  #done: RunnerEnd | undefined;
  #jobTimeoutMs: number | undefined;
  /** The largest output the manager of the live connection takes (its `maxout=`), if it said. */
  #managerMaxOutput: number | undefined;
  readonly #running = new Map<number, HandedJob>();
  /** Tags of running jobs a manager said it does not want: their results are set aside, not delivered. */
  readonly #unwanted = new Set<string>();
  #jobsDone = 0;
  /** Pipelined results sent and not acknowledged yet: each settles once acked, or once kept (persist). */
  readonly #unacked = new Set<Promise<void>>();
  /** Jobs handed to this runner since the start. */
  #jobsStarted = 0;
  /**
   * Settles once the connection being opened (dialled, not yet live: its
   * hello, then its kept results going out) is live or has failed; undefined
   * when none is being opened. A job that ends meanwhile waits for it, so it
   * is reported on that connection instead of kept until the next one.
   */
  #opening: Promise<void> | undefined;
  /** Jobs that ended and wait for the connection being opened ({@linkcode #opening}): its hello names them as held. */
  readonly #awaitingLive = new Set<HandedJob>();
  /** Results being written to the state directory: the next hello waits for them, so it names them as kept. */
  readonly #keeping = new Set<Promise<void>>();
  /** Why the state directory failed this runner (gone, replaced, or it cannot record jobs there): it stops, and fails. */
  #stateLost: string | undefined;

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

  /** Jobs running now, including those kept while the manager is away. */
  get running(): number {
    return this.#running.size;
  }

  /** Jobs reported to a manager since the start. */
  get done(): number {
    return this.#jobsDone;
  }

  /** Serves until the manager has no more jobs (or until stopped). Never rejects. */
  async run({ state, ledger }: PoolState): Promise<RunnerEnd> {
    const { spoolDir, shell, killGraceMs, runAs, jobCgroups } = this.#options;
    let executor: JobExecutor;
    try {
      executor = await JobExecutor.open({
        spoolDir,
        prefix: "vico-runner-",
        shell,
        killGraceMs,
        runAs,
        jobCgroups,
        ledger,
      });
    } catch (err) {
      return { kind: "cannot-start", reason: `Cannot prepare the runner: ${(err as Error).message}` };
    }
    try {
      const workers = Array.from({ length: this.#options.workers }, (_, i) => this.#textWorker(i, executor, state));
      await this.#connectionLoop(state);
      await Promise.all(workers);
      await Promise.all([...this.#unacked]);
      if (this.#stateLost !== undefined && this.#done?.kind === "stopped") {
        return { kind: "failed", reason: this.#stateLost, jobs: this.#jobsDone };
      }
      return this.#done!;
    } finally {
      await executor.close();
    }
  }

  /** Takes no new jobs (the link is already stopping). */
  stop(): void {
    this.#client?.stop();
  }

  /** Kills running jobs and drops the connection. */
  abort(reason: string): void {
    this.#jobsAbort.abort();
    this.#client?.abort(reason);
    this.#finish({ kind: "stopped", jobs: this.#jobsDone });
  }

  #finish(end: RunnerEnd): void {
    this.#done ??= end;
    for (const w of this.#clientWaiters.splice(0)) w();
    this.#link.wake();
  }

  /** The live client, waiting for one if there is none; undefined once the runner is done. */
  async #nextClient(): Promise<RunnerTextClient | undefined> {
    while (this.#done === undefined) {
      if (this.#client !== undefined && !this.#client.closed) return this.#client;
      await new Promise<void>((resolve) => this.#clientWaiters.push(resolve));
    }
    return undefined;
  }

  /** Keeps one connection open at a time, until the reconnect policy ends the runner. */
  async #connectionLoop(state: RunnerState | undefined): Promise<void> {
    const reconnect = this.#link.reconnect({ persist: state !== undefined, jobs: () => this.#jobsDone });
    const loop = { extension: this.#options.extension ?? true, everConnected: false };
    while (this.#done === undefined) {
      if (state !== undefined) this.#checkState(state);
      // Stopping waits for running jobs only: kept results are on disk and go
      // out on the next start.
      if (this.#link.stopping && this.#running.size === 0) {
        this.#finish({ kind: "stopped", jobs: this.#jobsDone });
        break;
      }
      const happened = await this.#connectOnce(state, reconnect, loop);
      const end = await reconnect.after(happened);
      if (end !== undefined) {
        // Without --persist, jobs do not outlive their manager's connection.
        if (happened.outcome === "lost") this.#jobsAbort.abort();
        this.#finish(end);
        break;
      }
    }
    for (const w of this.#clientWaiters.splice(0)) w();
  }

  /**
   * One connection, from dialling to its end (or to the failure of its
   * opening): how it came out. `loop` carries what one connection teaches
   * the next (a manager without the extension; whether one ever answered).
   */
  async #connectOnce(
    state: RunnerState | undefined,
    reconnect: Reconnect,
    loop: { extension: boolean; everConnected: boolean },
  ): Promise<Happened> {
    const dialed = await this.#link.dial();
    if (!("transport" in dialed)) return dialed;
    const opening = Promise.withResolvers<void>();
    this.#opening = opening.promise;
    const live = () => {
      if (this.#opening === opening.promise) this.#opening = undefined;
      opening.resolve();
    };
    try {
      return await this.#serve(dialed.transport, state, reconnect, loop, live);
    } finally {
      live();
    }
  }

  /**
   * A dialled connection, from its opening to its end. `live` is called
   * once it is live (after the kept results went out).
   */
  async #serve(
    transport: Transport,
    state: RunnerState | undefined,
    reconnect: Reconnect,
    loop: { extension: boolean; everConnected: boolean },
    live: () => void,
  ): Promise<Happened> {
    const { hostname, port } = this.#options;
    const quietly = this.#options.embedded ? "debug" : "info";
    const reader = new BufferedReader(transport, { maxLineBytes: this.#limits.maxLineBytes });
    let negotiated: RunnerTextClientOptions["extension"];
    /** With the extension, the kept results this hello named and its manager takes: only those go out on it. */
    let taken: StoredResult[] | undefined;
    const opening = this.#link.opening(transport);
    // The opening was cut short (its time limit, or a stop).
    const cutShort = (): Happened | undefined => {
      const cut = opening.cut;
      if (cut === undefined) return undefined;
      return { outcome: cut.stopped ? "openingStopped" : "handshakeTimeout", reason: cut.reason };
    };
    // Results the last connection left unacknowledged are kept first (persist), so that they are held lines now.
    // Results being kept too: a job that ends from now on waits for this connection instead.
    await Promise.all([...this.#unacked, ...this.#keeping]);
    if (loop.extension) {
      // Held lines name each hand-out by its tag; untagged ones (from a
      // manager without tags) cannot be bound to a hand-out and are dropped.
      const running = [...this.#running.values(), ...this.#awaitingLive].filter((j) =>
        !this.#unwanted.has(j.tag ?? "")
      );
      const kept = state ? await this.#keptResults(state) : [];
      const held: { tag?: string; command: string; kept?: StoredResult }[] = [
        ...running,
        ...kept.map((r) => ({ tag: r.tag, command: r.command, kept: r })),
      ];
      const holds = held.map((h) => h.tag === undefined ? h.command : `${h.tag} ${h.command}`);
      const hello = await sayHello(transport, reader, {
        proto: "text",
        id: state?.id,
        want: ["pulse", TAG_FEATURE, PIPE_FEATURE],
        holds,
        secret: this.#options.secret,
        manager: `${hostname}:${port}`,
      });
      const cut = cutShort();
      if (cut !== undefined) return cut;
      if (hello.kind !== "ok") {
        opening.done();
        transport.close();
      }
      switch (hello.kind) {
        case "noExtension":
          // A manager that only knows the drafts: connect again without it.
          log.info("The manager does not speak the vico extension; using the plain protocol");
          loop.extension = false;
          return { outcome: "noExtension" };
        case "untrusted":
          return { outcome: "AUTH_FAILED", reason: hello.reason };
        case "refused":
          return { outcome: "helloRefused", reason: `Manager refused this runner: ${hello.reason}`, auth: hello.auth };
        case "closed":
          return { outcome: "closedSilently", reason: hello.reason };
        case "failed":
          return { outcome: "openingFailed", reason: hello.reason };
      }
      negotiated = {
        pulseSec: hello.answer.pulse ?? 0,
        timeoutMs: hello.answer.timeoutMs,
        tagged: hello.answer.tag === 1,
        pipe: hello.answer.pipe === 1,
        ahead: hello.answer.ahead !== 0,
      };
      // What this manager does not want is set aside: kept results now,
      // running jobs once they finish. It never holds up other work.
      // What it already recorded (acked before this runner, stopped, could forget it) is forgotten.
      const have = new Set(hello.answer.have ?? []);
      const dropped = new Set(hello.answer.drop ?? []);
      taken = held.flatMap((h, i) => h.kept !== undefined && !dropped.has(i) ? [h.kept] : []);
      for (const i of dropped) {
        const h = held[i];
        if (h === undefined) continue;
        if (h.kept !== undefined && have.has(i)) {
          log.debug("The manager already recorded the kept result of {job}; forgetting it", { job: h.command });
          await h.kept.dispose();
        } else if (h.kept !== undefined) await this.#setAside(state!, h.kept, "the manager did not take it back");
        else if (h.tag !== undefined) this.#unwanted.add(h.tag);
        else this.#unwanted.add(h.command);
      }
      this.#managerMaxOutput = hello.answer.maxOutput;
    } else {
      this.#managerMaxOutput = undefined;
    }
    const client = new RunnerTextClient(transport, reader, {
      name: this.#options.name ?? Deno.hostname(),
      workers: this.#options.workers,
      extension: negotiated,
    });
    const opened = await client.open();
    opening.done();
    const cut = cutShort();
    if (cut !== undefined) return cut;
    if (opened.kind === "refused") return { outcome: "versionRefused", reason: opened.reason, auth: false };
    if (opened.kind === "failed") return { outcome: "openingFailed", reason: opened.reason };
    log[loop.everConnected && reconnect.backoff.down === undefined ? "debug" : quietly](
      "Connected to {host}:{port} as {name} with {workers} worker(s){ext}",
      {
        host: hostname,
        port,
        name: this.#options.name ?? Deno.hostname(),
        workers: this.#options.workers,
        ext: opened.extension
          ? ` (pulse ${opened.pulseSec}s${state ? `, id ${state.id}` : ""}${opened.pipe ? ", pipelined" : ""})`
          : "",
      },
    );
    loop.everConnected = true;
    this.#link.connection(true);
    // The backoff starts again only after this connection did useful work
    // (delivered a result or ran a job): connecting alone is not enough,
    // or a delivery that keeps failing would be retried at the first wait.
    const before = { done: this.#jobsDone, started: this.#jobsStarted };
    this.#jobTimeoutMs = opened.timeoutMs;
    // Results kept while the manager was away go first: REZULTO before PETO.
    if (state !== undefined) {
      for (const stored of taken ?? await this.#keptResults(state)) {
        if (!await this.#deliverKept(client, stored, state)) break;
      }
    }
    this.#client = client;
    live();
    for (const w of this.#clientWaiters.splice(0)) w();
    if (this.#link.stopping) client.stop();
    const end: ConnectionEnd = await client.ended;
    await client.finished();
    this.#client = undefined;
    if (this.#jobsDone > before.done || this.#jobsStarted > before.started) reconnect.backoff.reset();
    this.#link.connection(false, end.kind === "goodbye" ? "it has no more jobs" : undefined);
    switch (end.kind) {
      case "goodbye":
        return { outcome: "goodbye", onIdle: () => log[quietly]("The manager has no more jobs; waiting for more") };
      case "stopped":
        return { outcome: "stopped" };
      case "failed":
        return {
          outcome: "lost",
          reason: end.reason,
          retryReason: `Lost the manager: ${end.reason}; ${this.#running.size} job(s) keep running`,
        };
    }
  }

  /** One worker: the draft's WorkerLoop, across connections. */
  async #textWorker(id: number, executor: JobExecutor, state: RunnerState | undefined): Promise<void> {
    let finished: Finished | undefined;
    // The pipelined PETOs this worker sent and has not taken the answers of, oldest first, and their connection.
    const asks: Ask[] = [];
    /** How long the worker's last job ran (ms): short jobs keep one PETO ahead ({@linkcode PREFETCH_BELOW_MS}). */
    let lastRanMs = Infinity;
    while (true) {
      if (finished !== undefined) {
        // The result takes a PETO along when none is out for the next job; after a short job also when the one out
        // is for the next job: the worker stays one ahead, with one write a job.
        const ahead = lastRanMs < PREFETCH_BELOW_MS && this.#client?.asksAhead === true ? 1 : 0;
        const along = asks.length <= ahead && (asks.length === 0 || asks[0].client === this.#client);
        finished = await this.#deliver(
          finished,
          state,
          along ? (client, next) => asks.push({ client, next }) : undefined,
        );
        continue;
      }
      const client = await this.#nextClient();
      if (client === undefined) return;
      // Asks that went on an earlier connection are void (its jobs are the manager's to requeue).
      while (asks.length > 0 && asks[0].client !== client) asks.shift();
      // Its answer is awaited even after a FINO: FINO ANKAU goes once every PETO is answered.
      const next = asks.shift()?.next;
      if (next === undefined && (this.#link.stopping || client.finoReceived)) {
        await client.arriveWaitClose();
        continue;
      }
      let job: HandedJob | null;
      try {
        job = await (next ?? client.request());
      } catch (err) {
        if (err === STOPPED) await client.arriveWaitClose();
        continue;
      }
      // A state directory removed under the runner: no job runs that it cannot record, or keep the result of.
      if (job !== null && state !== undefined) this.#checkState(state);
      if (job === null || client.givesBack) {
        // Handed out just before the stop, not started: the manager takes it back, with no loss counted; so is
        // each job that answers a PETO still out (after a FINO they are all FINO).
        for (let handed: HandedJob | null | undefined = job; handed !== undefined;) {
          if (handed !== null && client.givesBack) await client.giveBack(handed).catch(() => {});
          const ask = asks.shift();
          handed = ask === undefined ? undefined : await ask.next.catch(() => null);
        }
        await client.arriveWaitClose();
        continue;
      }
      if (this.#stateLost !== undefined) {
        // Not pipelined: nothing to give it back with. Unreported, the
        // manager hands it out again once this connection closes.
        await client.arriveWaitClose();
        continue;
      }
      log.debug("Worker {id} runs {job}", { id, job: job.command });
      this.#jobsStarted++;
      this.#running.set(id, job);
      if (
        asks.length === 0 && lastRanMs < PREFETCH_BELOW_MS && client.asksAhead && !this.#link.stopping &&
        !client.finoReceived
      ) {
        const next = client.request();
        next.catch(() => {}); // awaited once this job ends, unless the connection is gone by then
        asks.push({ client, next });
      }
      const started = performance.now();
      try {
        const slot = (this.#options.slotBase ?? 0) + id + 1;
        finished = {
          job,
          ...await executor.run({
            command: job.command,
            slot,
            seq: job.seq,
            timeoutMs: this.#jobTimeoutMs,
            maxOutputBytes: this.#maxOutputBytes,
            signal: this.#jobsAbort.signal,
          }),
        };
      } finally {
        this.#running.delete(id);
        lastRanMs = performance.now() - started;
      }
      if (finished.unrecorded !== undefined && state !== undefined) {
        // Not a result: it never ran. A runner that cannot record its jobs
        // would fail every one it is handed: it stops, and gives this one
        // back (pipelined) so that it runs elsewhere with no loss counted.
        this.#stopForState(`Cannot record jobs in the state directory ${state.dir}: ${finished.unrecorded}`);
        await finished.output.dispose();
        if (client.givesBack && !client.closed) await client.giveBack(job).catch(() => {});
        finished = undefined;
        continue;
      }
      if (finished.stopSignal && await stoppedWithIt(() => this.#link.stopping)) {
        // Not a result: the signal that stops the runner reached the job too
        // (Slurm signals every process of a step, a terminal its process
        // group). Leaving it unreported, the manager runs it again once this
        // runner's connection closes.
        log.warn(
          "Job {job} was ended by the signal that stops this runner (exit {status}); it is not reported, " +
            "so the manager runs it again",
          { job: job.command, status: finished.status },
        );
        await finished.output.dispose();
        finished = undefined;
      }
    }
  }

  /**
   * Delivers a result kept in the state directory; false when the
   * connection failed (try the rest on the next one). A result larger than
   * the manager takes is set aside and reported as status 125 with a note; one
   * whose delivery was refused or dropped {@linkcode MAX_DELIVERY_FAILURES}
   * times in a row is set aside, so it never blocks other work.
   */
  async #deliverKept(client: RunnerTextClient, stored: StoredResult, state: RunnerState): Promise<boolean> {
    const limit = this.#managerMaxOutput;
    if (limit !== undefined && stored.size > limit) {
      let note: string;
      try {
        const where = await state.setAside(
          stored,
          `its output of ${stored.size} bytes exceeds the manager's limit of ${limit} bytes`,
        );
        note = `vico runner: Output of ${stored.size} bytes exceeds the manager's limit of ${limit} bytes; ` +
          `it was not sent (set aside on the runner in ${where})\n`;
      } catch (err) {
        log.error("Could not set aside the kept result of {job}: {err}", {
          job: stored.command,
          err: (err as Error).message,
        });
        return true;
      }
      try {
        await client.report(stored, STATUS_RUNNER_FAILURE, noteOutput(note));
        this.#jobsDone++;
        return true;
      } catch {
        return false;
      }
    }
    try {
      await client.report(stored, stored.status, stored, stored.timedOut);
    } catch {
      try {
        const failures = await state.noteFailedDelivery(stored);
        if (failures >= MAX_DELIVERY_FAILURES) {
          await state.setAside(stored, `its delivery was refused or dropped ${failures} times in a row`);
        }
      } catch (err) {
        log.error("Could not count a failed delivery of {job}: {err}", {
          job: stored.command,
          err: (err as Error).message,
        });
      }
      return false;
    }
    await stored.dispose();
    this.#jobsDone++;
    return true;
  }

  /** Reports a finished job on the live connection, or keeps it (persist); returns what is still to deliver. */
  async #deliver(
    result: Finished,
    state: RunnerState | undefined,
    asked?: (client: RunnerTextClient, next: Promise<HandedJob | null>) => void,
  ): Promise<Finished | undefined> {
    // A connection being opened is waited for: its hello names this job as held, and it is reported there.
    if (this.#client === undefined && this.#opening !== undefined) {
      this.#awaitingLive.add(result.job);
      try {
        while (this.#client === undefined && this.#opening !== undefined) await this.#opening;
      } finally {
        this.#awaitingLive.delete(result.job);
      }
    }
    const client = this.#client;
    const unwanted = this.#unwanted.delete(result.job.tag ?? result.job.command);
    if (unwanted && state !== undefined) {
      try {
        const kept = await state.store(result.job, result.status, result.output, result.timedOut);
        await this.#setAside(state, kept, "no manager wants it (it was handed out by another run)");
      } catch (err) {
        keepFailed(result, err);
      }
      await result.output.dispose();
      return undefined;
    }
    const limit = this.#managerMaxOutput;
    if (client !== undefined && !client.closed && limit !== undefined && result.output.size > limit) {
      // It ran under an earlier manager's larger limit (--persist): this one
      // would drop the runner for it. Kept, it goes out as 125 and a note.
      if (state === undefined) {
        const note = `vico runner: Output of ${result.output.size} bytes exceeds the manager's limit of ${limit} ` +
          `bytes; it was not sent\n`;
        await result.output.dispose();
        return {
          job: result.job,
          status: STATUS_RUNNER_FAILURE,
          output: { ...noteOutput(note), dispose: async () => {} },
        };
      }
      try {
        const kept = await state.store(result.job, result.status, result.output, result.timedOut);
        await this.#deliverKept(client, kept, state);
      } catch (err) {
        keepFailed(result, err);
      }
      await result.output.dispose();
      return undefined;
    }
    if (client !== undefined && !client.closed && client.pipelined && result.job.tag !== undefined) {
      // Pipelined: sent whole, and the worker asks for its next job at once; the ack settles it later.
      try {
        const ask = asked !== undefined && !this.#link.stopping;
        const { acked, next } = await client.sendResult(result.job, result.status, result.output, result.timedOut, ask);
        if (next !== undefined) {
          next.catch(() => {}); // awaited once taken, unless the connection is gone by then
          asked!(client, next);
        }
        const settled = acked.then(
          async () => {
            this.#jobsDone++;
            await result.output.dispose();
          },
          () => this.#keep(result, state),
        );
        this.#unacked.add(settled);
        settled.then(() => this.#unacked.delete(settled));
        return undefined;
      } catch {
        // Lost before it went out whole: keep it (persist) or let the manager run it again.
      }
    } else if (client !== undefined && !client.closed) {
      try {
        await client.report(result.job, result.status, result.output, result.timedOut);
        this.#jobsDone++;
        await result.output.dispose();
        return undefined;
      } catch {
        // Lost mid-report: keep it (persist) or let the manager run it again.
      }
    }
    await this.#keep(result, state);
    return undefined;
  }

  /**
   * Stops the runner, once, if its state directory is no longer its own
   * ({@linkcode RunnerState.lost}): running jobs finish and are reported
   * (their results can no longer be kept), no new one starts, and the
   * runner then ends as failed with the reason.
   */
  #checkState(state: RunnerState): void {
    if (this.#stateLost !== undefined) return;
    const lost = state.lost();
    if (lost !== undefined) this.#stopForState(lost);
  }

  /** {@linkcode #checkState}'s stop, once, for `reason`. */
  #stopForState(reason: string): void {
    if (this.#stateLost !== undefined) return;
    this.#stateLost = reason;
    log.error("{reason}; taking no new jobs: running ones finish and are reported, then the runner exits", { reason });
    this.#link.stop();
    this.stop();
    if (this.#running.size === 0) this.#link.cutOpenings();
  }

  /**
   * The kept results to announce and deliver; none, saying why, when the
   * state directory cannot be read (removed, unreadable, an I/O error): the
   * connection goes on without them, and jobs still run and are reported.
   */
  async #keptResults(state: RunnerState): Promise<StoredResult[]> {
    try {
      return await state.pending();
    } catch (err) {
      log.error("Cannot read the kept results in {dir}: {err}; connecting without them", {
        dir: state.dir,
        err: (err as Error).message,
      });
      return [];
    }
  }

  /**
   * Sets a kept result aside; one that cannot be (a full disk, a directory
   * gone or read-only) stays kept, saying why, and is offered again at the
   * next connection (whose manager drops it again, or takes it).
   */
  async #setAside(state: RunnerState, kept: StoredResult, reason: string): Promise<void> {
    try {
      await state.setAside(kept, reason);
    } catch (err) {
      log.error("Could not set aside the kept result of {job} ({reason}): {err}; it stays kept", {
        job: kept.command,
        reason,
        err: (err as Error).message,
      });
    }
  }

  /** A result no manager took: kept in the state directory until one does (persist), else dropped. */
  #keep(result: Finished, state: RunnerState | undefined): Promise<void> {
    const keeping = this.#store(result, state);
    this.#keeping.add(keeping);
    return keeping.finally(() => this.#keeping.delete(keeping));
  }

  /** {@linkcode #keep}'s work. */
  async #store(result: Finished, state: RunnerState | undefined): Promise<void> {
    if (state !== undefined) {
      try {
        await state.store(result.job, result.status, result.output, result.timedOut);
        log.info("Kept the result of {job} until a manager takes it", { job: result.job.command });
      } catch (err) {
        keepFailed(result, err);
      }
    }
    await result.output.dispose();
  }

  /** The output limit a job runs under: the smaller of this runner's and its manager's. */
  get #maxOutputBytes(): number {
    return Math.min(this.#limits.maxOutputBytes, this.#managerMaxOutput ?? Infinity);
  }
}

/**
 * A result could not be written to the state directory: it is lost to this
 * runner, and the manager it comes back to hands the job out again (the
 * runner no longer names it as held).
 */
function keepFailed(result: Finished, err: unknown): void {
  log.error("Could not keep the result of {job}: {err}; it is lost, and the manager hands the job out again", {
    job: result.job.command,
    err: (err as Error).message,
  });
}
