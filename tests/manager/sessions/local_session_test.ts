/**
 * The `--local` worker served in the manager's process: the real
 * scheduler, ledger, recorder and a durable results store, with a
 * recording executor in place of processes (no connection, no codec).
 */

import assert from "node:assert/strict";
import { DEFAULT_LIMITS } from "../../../core/limits.ts";
import { parseJobList } from "../../../manager/jobs/job_list.ts";
import type { ResultRecorder } from "../../../manager/results/result_recorder.ts";
import { LocalSession, type LocalSessionContext } from "../../../manager/sessions/local_session.ts";
import type { RunnerLink } from "../../../manager/scheduling/runner_link.ts";
import type { ExecutedJobOutcome, ExecutedJobSpec, JobOutput, JobRunner } from "../../../core/executed_job.ts";
import { managerParts } from "../../helpers/manager_parts.ts";
import { readOutput, readRecords, tempDir } from "../../helpers/journal.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

type Spec = ExecutedJobSpec;
type Done = ExecutedJobOutcome;

function output(text: string): JobOutput & { disposed: boolean } {
  const bytes = enc.encode(text);
  const out = {
    size: bytes.length,
    disposed: false,
    pipeTo: async (sink: (chunk: Uint8Array) => Promise<void>) => {
      // In two chunks, as a spool file read in pieces would come.
      await sink(bytes.subarray(0, 1));
      await sink(bytes.subarray(1));
    },
    dispose: () => {
      out.disposed = true;
      return Promise.resolve();
    },
  };
  return out;
}

/** An executor that answers each command with `answer` and records what it was asked. */
class RecordingExecutor implements JobRunner {
  readonly calls: Spec[] = [];
  readonly outputs: ReturnType<typeof output>[] = [];
  constructor(readonly answer: (spec: Spec) => Promise<Partial<Done> & { text?: string }>) {}
  async run(spec: Spec): Promise<Done> {
    this.calls.push(spec);
    const got = await this.answer(spec);
    const out = output(got.text ?? `${spec.command}\n`);
    this.outputs.push(out);
    return {
      status: got.status ?? 0,
      output: out,
      timedOut: got.timedOut ?? false,
      stopSignal: got.stopSignal ?? false,
    };
  }
}

async function localManager(
  dir: string,
  list: string,
  wrap?: (recorder: ResultRecorder) => ResultRecorder,
  more: Partial<LocalSessionContext> = {},
) {
  const jobs = parseJobList(enc.encode(list));
  const { keyOf, results, queue, scheduler, recorder: real } = await managerParts(dir, jobs, { durable: true });
  const ctx: LocalSessionContext = {
    ...more,
    scheduler,
    results,
    recorder: wrap?.(real) ?? real,
    jobs,
    limits: { ...DEFAULT_LIMITS, maxOutputBytes: 1000 },
    transferIdleTimeoutMs: 10_000,
    run: "run1",
    keyOf,
    noteAssignment: () => Promise.resolve(),
    jobTimeoutMs: 7_000,
  };
  return { ctx, scheduler, queue, results, close: () => results.close() };
}

/** A recorder whose `record` goes through `record` (the rest is the real one's). */
function recorderWith(real: ResultRecorder, record: ResultRecorder["record"]): ResultRecorder {
  return new Proxy(real, {
    get: (target, name) => {
      if (name === "record") return record;
      const value = Reflect.get(target, name, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}

Deno.test("LocalSession.run: two workers record every job once with its output, told its slot, line and limits", async () => {
  await using dir = await tempDir();
  const m = await localManager(dir.path, "echo a\n# a comment\necho b\necho c\necho d\necho e\n");
  const executor = new RecordingExecutor(() => new Promise((r) => setTimeout(() => r({}), 5)));
  const ends = await Promise.all([1, 2].map((slot) => new LocalSession(m.ctx, executor, slot, "in-process:").run()));
  assert.deepEqual(ends, [{ kind: "finished" }, { kind: "finished" }]);
  await m.scheduler.done;
  await m.close();
  const records = readRecords(dir.path);
  assert.deepEqual(records.map((r) => r.command).sort(), ["echo a", "echo b", "echo c", "echo d", "echo e"]);
  for (const r of records) {
    assert.equal(dec.decode(readOutput(dir.path, r)), `${r.command}\n`);
    assert.match(r.host, /^local-[12]$/);
  }
  assert.deepEqual(new Set(executor.calls.map((c) => c.slot)), new Set([1, 2]));
  const lineOf = new Map(executor.calls.map((c) => [c.command, c.seq]));
  assert.equal(lineOf.get("echo b"), 3, "VICO_SEQ is the job's line in its list");
  assert.ok(executor.calls.every((c) => c.timeoutMs === 7_000 && c.maxOutputBytes === 1000));
  assert.ok(executor.outputs.every((o) => o.disposed), "every spool is released");
});

Deno.test("LocalSession.run: the next job starts while the last result still commits (no lock-step)", async () => {
  await using dir = await tempDir();
  let release!: () => void;
  const held = new Promise<void>((resolve) => (release = resolve));
  const m = await localManager(
    dir.path,
    "echo a\necho b\n",
    (real) => recorderWith(real, (admitted, delivery) => held.then(() => real.record(admitted, delivery))),
  );
  const executor = new RecordingExecutor(() => Promise.resolve({}));
  const session = new LocalSession(m.ctx, executor, 1, "in-process:");
  const running = session.run();
  while (executor.calls.length < 2) await new Promise((r) => setTimeout(r, 1));
  assert.equal(readRecords(dir.path).length, 0, "the second job ran before the first result was durable");
  release();
  assert.deepEqual(await running, { kind: "finished" });
  await m.close();
  assert.equal(readRecords(dir.path).length, 2);
});

Deno.test("LocalSession.run: its results may share a sync (patient), but not under --halt, where the next job waits for each", async () => {
  for (const settleBeforeNext of [false, true]) {
    await using dir = await tempDir();
    const patience: (boolean | undefined)[] = [];
    const m = await localManager(
      dir.path,
      "echo a\necho b\n",
      (real) =>
        recorderWith(real, (admitted, delivery) => {
          patience.push(delivery.patient);
          return real.record(admitted, delivery);
        }),
      { settleBeforeNext },
    );
    const session = new LocalSession(m.ctx, new RecordingExecutor(() => Promise.resolve({})), 1, "in-process:");
    assert.deepEqual(await session.run(), { kind: "finished" });
    await m.close();
    assert.deepEqual(patience, [!settleBeforeNext, !settleBeforeNext], `settleBeforeNext ${settleBeforeNext}`);
  }
});

Deno.test("LocalSession.run: a commit that fails ends the worker failed with its reason; the job goes back unsettled", async () => {
  await using dir = await tempDir();
  const m = await localManager(
    dir.path,
    "echo a\n",
    (real) => recorderWith(real, () => Promise.reject(new Error("No space left on device"))),
  );
  const executor = new RecordingExecutor(() => Promise.resolve({}));
  const end = await new LocalSession(m.ctx, executor, 1, "in-process:").run();
  assert.deepEqual(end, { kind: "failed", reason: "No space left on device" });
  assert.equal(m.queue.settled, 0);
  assert.equal(m.queue.running, 0, "the worker holds nothing: its job is back in the queue");
  await m.close();
  assert.equal(readRecords(dir.path).length, 0);
});

Deno.test("LocalSession.abort: the running job's signal aborts, nothing is recorded, it ends stopped and the job goes back", async () => {
  await using dir = await tempDir();
  const m = await localManager(dir.path, "sleep 100\n");
  let signal: AbortSignal | undefined;
  const executor = new RecordingExecutor((spec) => {
    signal = spec.signal;
    return new Promise((resolve) =>
      spec.signal!.addEventListener("abort", () => resolve({ status: 143 }), { once: true })
    );
  });
  const session = new LocalSession(m.ctx, executor, 1, "in-process:");
  const running = session.run();
  while (signal === undefined) await new Promise((r) => setTimeout(r, 1));
  session.abort("the manager is stopping");
  assert.deepEqual(await running, { kind: "stopped" });
  assert.equal(m.queue.settled, 0);
  assert.equal(m.queue.running, 0);
  assert.ok(executor.outputs[0].disposed);
  await m.close();
  assert.equal(readRecords(dir.path).length, 0);
});

Deno.test("LocalSession.run: a job killed by SIGTERM is not recorded while the manager stops, and is recorded otherwise", async () => {
  await using dir = await tempDir();
  const m = await localManager(dir.path, "kill -TERM $$\nkill -TERM $$ # 2\n");
  let calls = 0;
  const executor = new RecordingExecutor(() => {
    // The first dies of the signal that stops the manager; the second of one sent by itself.
    if (++calls === 1) setTimeout(() => m.scheduler.stopDispatch(), 20);
    return Promise.resolve({ status: 143, stopSignal: calls === 1, text: "" });
  });
  const stopping = new LocalSession(m.ctx, executor, 1, "in-process:");
  assert.deepEqual(await stopping.run(), { kind: "finished" });
  assert.equal(calls, 1, "no new job once stopping");
  assert.equal(m.queue.settled, 0, "the job the stop killed is no result");
  await m.close();
  assert.equal(readRecords(dir.path).length, 0);

  await using dir2 = await tempDir();
  const n = await localManager(dir2.path, "kill -TERM $$\n");
  const ended = new RecordingExecutor(() => Promise.resolve({ status: 143, stopSignal: true, text: "" }));
  assert.deepEqual(await new LocalSession(n.ctx, ended, 1, "in-process:").run(), { kind: "finished" });
  await n.close();
  assert.deepEqual(readRecords(dir2.path).map((r) => r.status), [143], "not stopping: it is the job's own status");
});

Deno.test("LocalSession.run: a result that comes while another attempt of its job commits waits for that commit: a duplicate if it settled the job, recorded if it failed", async () => {
  for (const winner of ["settles", "fails"] as const) {
    await using dir = await tempDir();
    const m = await localManager(dir.path, "echo a\n");
    // A slow disk: the first commit waits for the gate (and, here, may fail).
    let open!: () => void;
    const gate = new Promise<void>((resolve) => (open = resolve));
    const commit = m.results.commit.bind(m.results);
    let commits = 0;
    m.results.commit = (...args) =>
      ++commits > 1 ? commit(...args) : gate.then(() => {
        if (winner === "fails") throw new Error("Input/output error");
        return commit(...args);
      });
    // An identified runner takes the job (attempt 1) and is lost before it reports: the job goes back.
    const assigned: number[] = [];
    const remote = (): RunnerLink => ({
      host: "remote",
      peer: "remote:1",
      runnerId: "r1",
      accepts: () => true,
      assign: (_job, _rank, attempt) => void assigned.push(attempt),
      release: () => {},
      refuse: () => {},
    });
    const first = remote();
    m.scheduler.onRunnerJoined(first, []);
    m.scheduler.onJobRequest(first);
    assert.deepEqual(assigned, [1]);
    m.scheduler.onRunnerLost(first, true);
    let racing: Promise<void> | undefined;
    const executor = new RecordingExecutor(() => {
      // While the local worker runs it (attempt 2), the runner comes back holding attempt 1 and delivers it.
      const back = remote();
      m.scheduler.onRunnerJoined(back, [{ job: 0, attempt: 1 }]);
      const admission = m.ctx.recorder.admitNow(0, 1, back);
      assert.equal(admission.kind, "accepted");
      if (admission.kind === "accepted") {
        racing = m.ctx.recorder.record(admission.ticket, {
          link: back,
          rank: 1,
          status: 0,
          handedOutAt: new Date().toISOString(),
          returned: [],
        });
      }
      return Promise.resolve({ text: "local\n" });
    });
    const running = new LocalSession(m.ctx, executor, 1, "in-process:").run();
    while (racing === undefined) await new Promise((r) => setTimeout(r, 1));
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(readRecords(dir.path).length, 0, "nothing recorded while the first commit is in flight");
    open();
    await racing.catch(() => {});
    assert.deepEqual(await running, { kind: "finished" }, winner);
    await m.close();
    const records = readRecords(dir.path);
    assert.equal(records.length, 1, `recorded once (${winner})`);
    if (winner === "settles") {
      assert.equal(records[0].attempt, 1, "the attempt that committed first is the record");
      assert.equal(records[0].host, "remote");
    } else {
      assert.equal(records[0].attempt, 2, "the first commit failed: the local result is the record");
      assert.equal(records[0].host, "local-1");
      assert.equal(dec.decode(readOutput(dir.path, records[0])), "local\n");
    }
    assert.ok(executor.outputs[0].disposed, "the local output is let go");
  }
});
