/**
 * A worker of `--local N`, served in the manager's own process: no
 * connection, no codec, no handshake. To the scheduler it is a runner like
 * any other ({@linkcode RunnerLink}, named `local-<i>`); it asks for a job,
 * runs it through the {@linkcode JobRunner} the caller composed in (the
 * runner's, so jobs start, time out and spool exactly as on a runner), and
 * records its result through the same recorder and ledger as a pipelined
 * session: the result's commit (its journal record, group-committed with the
 * others) goes on while the worker starts its next job, and a job the
 * ledger no longer wants from it is discarded, not recorded.
 *
 * It ends when the scheduler has no more jobs for it, when it is aborted
 * (its running job is killed; its jobs go back to the queue), or when a
 * commit fails (a full disk, say: it ends `failed` with the reason, and its
 * jobs go back), as a dropped runner would.
 *
 * @module
 */

import { type ExecutedJobOutcome, type JobRunner, stoppedWithIt } from "../../core/executed_job.ts";
import { isoNow } from "../../util/iso_now.ts";
import { logger } from "../../util/log.ts";
import type { JobClass } from "../jobs/job_list.ts";
import type { Admission, Delivery } from "../results/result_recorder.ts";
import type { StagedOutput } from "../results/results_store.ts";
import type { RunnerLink } from "../scheduling/runner_link.ts";
import type { SessionContext } from "./session_context.ts";
import { SessionKit } from "./session_kit.ts";

const log = logger("manager");

/** What a local session needs from the manager around it. */
export interface LocalSessionContext extends SessionContext {
  /** Each job's time limit (`--timeout`). */
  readonly jobTimeoutMs?: number;
}

/** How a local session ended. */
export type LocalSessionEnd =
  | { readonly kind: "finished" | "stopped"; readonly reason?: undefined }
  | { readonly kind: "failed"; readonly reason: string };

/** The scheduler's answer: a job and its attempt, or -1 for none. */
interface Answer {
  readonly job: number;
  readonly attempt: number;
}

/** One in-process worker, as the scheduler's runner. */
export class LocalSession implements RunnerLink {
  /** `local-<slot>`. */
  readonly name: string;
  /** `in-process:<slot>`. */
  readonly peer: string;
  readonly #ctx: LocalSessionContext;
  readonly #executor: JobRunner;
  readonly #slot: number;
  readonly #kit: SessionKit<Answer>;
  readonly #abort = new AbortController();
  /** Results committing now. */
  readonly #commits = new Set<Promise<void>>();
  /** The first commit that failed: the session ends with it. */
  #failure: unknown;

  /**
   * A worker with the slot `slot`.
   *
   * @param ctx The manager around it.
   * @param executor Runs its jobs.
   * @param slot Its number from 1: its name, and its jobs' `VICO_SLOT`.
   * @param peerPrefix Its `peer` is this and its slot.
   */
  constructor(ctx: LocalSessionContext, executor: JobRunner, slot: number, peerPrefix: string) {
    this.#ctx = ctx;
    this.#executor = executor;
    this.#slot = slot;
    this.name = `local-${slot}`;
    this.peer = `${peerPrefix}${slot}`;
    const connection = { close: () => this.#abort.abort() };
    this.#kit = new SessionKit(this, connection, ctx.scheduler, { deadline: Infinity, done() {} }, []);
  }

  /** It is counted and judged by its name (see RunnerLink.host). */
  get host(): string {
    return this.name;
  }

  /** It runs plain command lines only (task bundles go to a local binary node). */
  accepts(cls: JobClass): boolean {
    return !cls.binaryOnly;
  }

  /** The scheduler's answer to the pending request: a job. */
  assign(job: number, _rank: number, attempt: number): void {
    this.#kit.request.answer({ job, attempt });
  }

  /** The scheduler's answer to the pending request: no more jobs. */
  release(): void {
    this.#kit.request.answer({ job: -1, attempt: 0 });
  }

  /** Jobs remain, but only for binary nodes: nothing for it either. */
  refuse(): void {
    this.#kit.request.answer({ job: -1, attempt: 0 });
  }

  /** Kills its running job and ends it; its jobs go back to the queue. */
  abort(_reason: string): void {
    this.#abort.abort();
    this.#kit.request.answer({ job: -1, attempt: 0 });
  }

  /** Works until the scheduler has nothing more for it, it is aborted, or a commit fails. Never rejects. */
  async run(): Promise<LocalSessionEnd> {
    let end: LocalSessionEnd = { kind: "finished" };
    await this.#kit.run(
      async () => {
        this.#kit.join();
        await this.#work();
        if (this.#abort.signal.aborted) end = { kind: "stopped" };
      },
      (err) => {
        end = { kind: "failed", reason: err instanceof Error ? err.message : String(err) };
        return Promise.resolve();
      },
      () => {},
    );
    return end;
  }

  async #work(): Promise<void> {
    const { scheduler, recorder, jobs } = this.#ctx;
    try {
      while (!this.#abort.signal.aborted) {
        if (this.#failure !== undefined) throw this.#failure;
        if (this.#ctx.settleBeforeNext && this.#commits.size > 0) {
          // --halt: each result is judged before this worker starts another.
          await Promise.allSettled([...this.#commits]);
          continue;
        }
        // A break the quarantine gives this host holds its requests.
        const pause = recorder.pauseLeft(this.host);
        if (pause > 0) {
          await this.#sleep(pause);
          continue;
        }
        const asked = this.#kit.request.ask(() => scheduler.onJobRequest(this));
        const { job, attempt } = asked instanceof Promise ? await asked : asked.answer;
        if (job === -1) {
          if (this.#commits.size === 0 || this.#abort.signal.aborted) return;
          // A result committing may yet requeue its job (a retry): ask again once settled.
          await Promise.allSettled([...this.#commits]);
          continue;
        }
        const handedOutAt = isoNow();
        const done = await this.#executor.run({
          command: jobs.commands[job],
          slot: this.#slot,
          seq: jobs.lines[job],
          timeoutMs: this.#ctx.jobTimeoutMs,
          maxOutputBytes: this.#ctx.limits.maxOutputBytes,
          signal: this.#abort.signal,
        });
        const stopping = () => this.#ctx.scheduler.stopping || this.#abort.signal.aborted;
        if (this.#abort.signal.aborted || (done.stopSignal && await stoppedWithIt(stopping))) {
          // Killed by its own stop (the manager's, or the signal that stops the
          // manager reached the job too): no result; it runs again later.
          if (!this.#abort.signal.aborted) {
            log.warn(
              "Job {job} was ended by the signal that stops the manager (exit {status}); it is not recorded, " +
                "so it runs again on the next start",
              { job: jobs.commands[job], status: done.status },
            );
          }
          await done.output.dispose();
          continue;
        }
        await this.#record(job, attempt, handedOutAt, done);
      }
    } finally {
      await Promise.allSettled([...this.#commits]);
    }
    if (this.#failure !== undefined) throw this.#failure;
  }

  /** Stages the output and starts the commit (or, for a job the ledger no longer wants from it, the discard). */
  async #record(
    job: number,
    attempt: number,
    handedOutAt: string,
    done: ExecutedJobOutcome,
  ): Promise<void> {
    const recorder = this.#ctx.recorder;
    let admission: Admission = recorder.admitNow(job, attempt, this);
    if (admission.kind === "duplicate" && admission.busy === true) admission = await recorder.admit(job, attempt, this);
    if (admission.kind === "unknown") {
      await done.output.dispose();
      return;
    }
    let output: StagedOutput | undefined;
    try {
      if (admission.kind === "accepted" && done.output.size > 0) {
        output = this.#ctx.results.stageOutput();
        const staged = output;
        await done.output.pipeTo((chunk) => staged.write(chunk));
      }
    } catch (err) {
      await output?.discard();
      if (admission.kind === "accepted") recorder.refuse(admission.ticket);
      throw err;
    } finally {
      await done.output.dispose();
    }
    const delivery: Delivery = {
      link: this,
      rank: 1,
      status: done.status,
      handedOutAt,
      output,
      returned: [],
      timedOut: done.timedOut,
      // The worker starts its next job while this commits; under --halt the next job waits for it.
      patient: !this.#ctx.settleBeforeNext,
    };
    const committed = admission.kind === "accepted"
      ? recorder.record(admission.ticket, delivery)
      : recorder.discard(job, delivery, admission.settled);
    const tracked = committed.catch((err) => {
      this.#failure ??= err;
    }).finally(() => this.#commits.delete(tracked));
    this.#commits.add(tracked);
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      const signal = this.#abort.signal;
      signal.addEventListener("abort", done, { once: true });
      function done(): void {
        clearTimeout(timer);
        signal.removeEventListener("abort", done);
        resolve();
      }
    });
  }
}
