/**
 * The commit authority, model-based: random interleavings of hand-outs,
 * results (fast failures that become quarantine suspects among them),
 * retries, runners lost and coming back, expired leases, late duplicates,
 * protocol violations and manager restarts, driven through the real
 * Scheduler, Ledger, ResultRecorder and ResultsStore (on a temporary
 * directory). Checked after every run:
 *
 * - one `job` record per key, ever (across restarts);
 * - every job recorded in the end (nothing lost);
 * - an acknowledgement only once a record naming that key (and, for an
 *   accepted delivery, that attempt) is in the journal;
 * - attempt numbers never repeat for a key, across restarts.
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import { PLAIN_CLASS } from "../../../manager/jobs/job_list.ts";
import type { JobList } from "../../../manager/jobs/job_list.ts";
import { JobQueue } from "../../../manager/jobs/job_queue.ts";
import { Ledger } from "../../../manager/results/ledger.ts";
import { Quarantine } from "../../../manager/scheduling/quarantine.ts";
import { ResultRecorder } from "../../../manager/results/result_recorder.ts";
import { type JournalRecord, ResultsStore } from "../../../manager/results/results_store.ts";
import { planResume } from "../../../manager/jobs/resume.ts";
import { type CarriedJob, type RunnerLink, Scheduler } from "../../../manager/scheduling/scheduler.ts";
import { readJournal, tempDir } from "../../helpers/journal.ts";

const JOBS = 6;
const keyOf = (job: number) => `k${job}-1`;
const list: JobList = {
  source: "model",
  format: "text",
  commands: Array.from({ length: JOBS }, (_, j) => `job ${j}`),
  lines: Uint32Array.from({ length: JOBS }, (_, j) => j + 1),
  occurrences: new Uint32Array(JOBS).fill(1),
  classes: [PLAIN_CLASS],
  classOf: new Uint16Array(JOBS),
};

interface Hand {
  job: number;
  attempt: number;
  /** The manager life that handed it out. */
  run: string;
}

/** A runner: its links across connections, and what it was handed and still holds. */
class ModelRunner {
  link: FakeLink | undefined;
  held: Hand[] = [];
  delivered: Hand[] = [];
  constructor(readonly name: string, readonly id: string | undefined) {}
}

class FakeLink implements RunnerLink {
  readonly peer = "model";
  constructor(readonly runner: ModelRunner, readonly run: string) {}
  get host() {
    return this.runner.name;
  }
  get runnerId() {
    return this.runner.id;
  }
  accepts() {
    return true;
  }
  assign(job: number, _rank: number, attempt: number) {
    this.runner.held.push({ job, attempt, run: this.run });
  }
  release() {}
  refuse() {}
}

type Op =
  | { op: "ask"; r: number }
  | { op: "deliver"; r: number; pick: number; status: number; fast: boolean }
  | { op: "dup"; r: number }
  | { op: "forge"; r: number; job: number }
  | { op: "lose"; r: number }
  | { op: "expireLease"; r: number }
  | { op: "expireSuspects" }
  | { op: "tick"; ms: number }
  | { op: "settle" }
  | { op: "restart" };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ op: fc.constant("ask" as const), r: fc.nat(2) }) },
  {
    weight: 6,
    arbitrary: fc.record({
      op: fc.constant("deliver" as const),
      r: fc.nat(2),
      pick: fc.nat(3),
      status: fc.constantFrom(0, 0, 1),
      fast: fc.boolean(),
    }),
  },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("dup" as const), r: fc.nat(2) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("forge" as const), r: fc.nat(2), job: fc.nat(JOBS - 1) }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant("lose" as const), r: fc.nat(2) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("expireLease" as const), r: fc.nat(1) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("expireSuspects" as const) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("tick" as const), ms: fc.integer({ min: 1, max: 6000 }) }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant("settle" as const) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("restart" as const) }) },
);

/** One manager life over `dir`, wired as Manager.start wires it. */
async function startLife(dir: string, clock: { now: number }, runId: string, blackHoles: boolean) {
  const results = await ResultsStore.open(dir, { durable: false });
  const plan = planResume(JOBS, results.previous, keyOf);
  const settled = (job: number) => plan.settled[job] === 1;
  const queue = new JobQueue(JOBS, {
    settled,
    running: (job) => plan.carriedBy.has(job),
    attemptsBefore: (job) => plan.attempts[job],
    failuresBefore: (job) => plan.failures[job],
  });
  const ledger = new Ledger(JOBS, runId, results.previous.runIds, settled);
  for (const [job, issued] of plan.issued) {
    for (const i of issued) ledger.issue(job, { attempt: i.attempt, runner: i.runner, run: i.run }, keyOf(job));
  }
  const late: { recorder?: ResultRecorder } = {};
  const lostWork: Promise<unknown>[] = [];
  const scheduler = new Scheduler(queue, [PLAIN_CLASS], {
    onLost: (job, reason, link) => lostWork.push(late.recorder!.lost(job, reason, link)),
  }, { maxAttempts: 2, leaseMs: 1000, keyOf, ledger, now: () => clock.now });
  scheduler.restoreLeases(plan.carriedBy);
  const recorder = late.recorder = new ResultRecorder(scheduler, results, list, keyOf, {
    retries: 1,
    quarantine: new Quarantine({ streak: blackHoles ? 2 : 0, fastMs: 100, holdMs: 5000, initialMs: 2000 }),
    onQuarantine: (host, until) => scheduler.bar(host, until),
    now: () => clock.now,
  });
  await results.note({ type: "run", id: runId, started: "t", source: "model", jobs: JOBS, pid: 1 });
  return { results, queue, ledger, scheduler, recorder, lostWork };
}

type Life = Awaited<ReturnType<typeof startLife>>;

async function play(ops: Op[], blackHoles: boolean): Promise<void> {
  await using dir = await tempDir();
  const clock = { now: 1_000_000 };
  let runs = 0;
  let life: Life = await startLife(dir.path, clock, `run${++runs}`, blackHoles);
  const runners = [new ModelRunner("a", "ida"), new ModelRunner("b", "idb"), new ModelRunner("c", undefined)];
  const inFlight = new Set<Promise<void>>();
  const failures: string[] = [];

  const journal = (): JournalRecord[] => readJournal(dir.path);
  const recordedFor = (job: number, attempt?: number) =>
    journal().some((r) =>
      (r.type === "job" && r.key === keyOf(job)) ||
      (attempt !== undefined && r.type === "attempt" && r.key === keyOf(job) && r.attempt === attempt)
    );

  const connect = (runner: ModelRunner) => {
    const link = new FakeLink(runner, life.ledger.run);
    runner.link = link;
    // A returning identified runner names what it holds; the manager takes
    // back only hand-outs it issued to it (as the extension answer does),
    // and the runner sets the rest aside.
    if (runner.id === undefined) runner.held = []; // a plain runner's jobs died with its connection
    const wanted = (h: Hand) => life.ledger.knowsRun(h.run) && life.ledger.wants(runner.id!, h.run, h.job, h.attempt);
    runner.held = runner.held.filter(wanted);
    const held: CarriedJob[] = runner.held.map((h) => ({ job: h.job, attempt: h.attempt }));
    life.scheduler.onRunnerJoined(link, held);
  };
  for (const r of runners) connect(r);

  const deliver = (runner: ModelRunner, hand: Hand, status: number, fast: boolean) => {
    const link = runner.link!;
    const output = life.results.stageOutput();
    const at = new Date(clock.now - (fast ? 10 : 1000)).toISOString();
    const delivery = { link, rank: 1, status, handedOutAt: at, output, returned: [] };
    const p = (async () => {
      const admission = await life.recorder.admit(hand.job, hand.attempt, link);
      if (admission.kind === "unknown") {
        failures.push(`unknown delivery of a real hand-out ${JSON.stringify(hand)} by ${runner.name}`);
        return;
      }
      await output.write(new TextEncoder().encode(`out ${hand.job}/${hand.attempt}\n`));
      if (admission.kind === "accepted") {
        await life.recorder.record(admission.ticket, delivery);
        if (!recordedFor(hand.job, hand.attempt)) failures.push(`acknowledged before durable: ${JSON.stringify(hand)}`);
      } else {
        await life.recorder.discard(hand.job, delivery, admission.settled);
        if (!life.ledger.isSettled(hand.job) && !recordedFor(hand.job, hand.attempt) && !heldSomewhere(hand)) {
          failures.push(`duplicate acknowledged with nothing recorded: ${JSON.stringify(hand)}`);
        }
      }
    })().catch((err) => void failures.push(`record failed: ${err}`));
    inFlight.add(p);
    p.finally(() => inFlight.delete(p));
  };
  // A duplicate of an attempt that already delivered is fine to acknowledge
  // (its first copy was recorded, or is being).
  const heldSomewhere = (hand: Hand) =>
    runners.some((r) => r.delivered.some((d) => d.job === hand.job && d.attempt === hand.attempt));

  const settle = async () => {
    while (inFlight.size > 0) await Promise.all([...inFlight]);
    await Promise.all(life.lostWork.splice(0));
  };

  for (const o of ops) {
    const runner = "r" in o ? runners[o.r] : undefined;
    switch (o.op) {
      case "ask":
        if (runner!.link !== undefined) life.scheduler.onJobRequest(runner!.link);
        break;
      case "deliver": {
        if (runner!.link === undefined || runner!.held.length === 0) break;
        const [hand] = runner!.held.splice(o.pick % runner!.held.length, 1);
        runner!.delivered.push(hand);
        deliver(runner!, hand, o.status, o.fast);
        break;
      }
      case "dup": {
        const hand = runner!.delivered.at(-1);
        if (runner!.link === undefined || hand === undefined) break;
        const claim = life.ledger.claim(hand.job, hand.attempt, runner!.id);
        if (claim.kind === "accepted") failures.push(`a delivered attempt was accepted again: ${JSON.stringify(hand)}`);
        else if (claim.kind === "duplicate") await claim.settled;
        break;
      }
      case "forge": {
        // A result for a job this runner was never handed as this attempt.
        if (runner!.link === undefined) break;
        const attempt = life.queue.attempts(o.job) + 7;
        const admission = await life.recorder.admit(o.job, attempt, runner!.link);
        if (admission.kind === "accepted") failures.push(`forged result accepted for job ${o.job}`);
        break;
      }
      case "lose":
        if (runner!.link === undefined) break;
        life.scheduler.onRunnerLost(runner!.link);
        connect(runner!);
        break;
      case "expireLease":
        life.scheduler.expireLease(runners[o.r].id!);
        break;
      case "expireSuspects":
        await life.recorder.expireSuspects().catch((err) => failures.push(`expire failed: ${err}`));
        break;
      case "tick":
        clock.now += o.ms;
        break;
      case "settle":
        await settle();
        break;
      case "restart":
        await settle();
        await life.results.close();
        life = await startLife(dir.path, clock, `run${++runs}`, blackHoles);
        for (const r of runners) connect(r);
        break;
    }
  }
  // Drain: every runner reports everything it holds, successfully, until done.
  for (let round = 0; round < 200 && !life.queue.done; round++) {
    clock.now += 10_000;
    for (const r of runners) {
      if (r.id !== undefined) life.scheduler.expireLease(r.id);
      life.scheduler.lift(r.name);
      life.scheduler.onJobRequest(r.link!);
      for (const hand of r.held.splice(0)) {
        r.delivered.push(hand);
        deliver(r, hand, 0, false);
      }
    }
    await settle();
    await life.recorder.expireSuspects();
  }
  await settle();
  await life.results.close();

  const records = journal();
  const jobsByKey = new Map<string, number>();
  for (const r of records) if (r.type === "job") jobsByKey.set(r.key, (jobsByKey.get(r.key) ?? 0) + 1);
  for (let job = 0; job < JOBS; job++) {
    const n = jobsByKey.get(keyOf(job)) ?? 0;
    if (n !== 1) failures.push(`${keyOf(job)} has ${n} job records`);
  }
  const attempts = new Set<string>();
  for (const r of records) {
    if (r.type !== "attempt") continue;
    const id = `${r.key}~${r.attempt}`;
    if (attempts.has(id)) failures.push(`attempt ${id} recorded twice`);
    attempts.add(id);
  }
  assert.deepEqual(failures, [], `ops: ${JSON.stringify(ops)}`);
}

Deno.test({
  name:
    "ResultRecorder through the Ledger: one record per key, nothing lost, no ack before durable, under random interleavings",
  permissions: { read: true, write: true, env: true, sys: ["hostname"] },
  async fn() {
    await fc.assert(fc.asyncProperty(fc.array(opArb, { minLength: 5, maxLength: 60 }), (ops) => play(ops, false)), {
      numRuns: Number(Deno.env.get("VICO_FUZZ_RUNS") ?? 150),
    });
  },
});

Deno.test({
  name: "ResultRecorder through the Ledger with quarantine suspects: the same, under random interleavings",
  permissions: { read: true, write: true, env: true, sys: ["hostname"] },
  async fn() {
    await fc.assert(fc.asyncProperty(fc.array(opArb, { minLength: 5, maxLength: 60 }), (ops) => play(ops, true)), {
      numRuns: Number(Deno.env.get("VICO_FUZZ_RUNS") ?? 150),
    });
  },
});

Deno.test({
  name:
    "ResultRecorder onRecorded: each settling record (a result's, a lost job's) is told with its job once durable, before the job counts as settled; a retried attempt's is not",
  permissions: { read: true, write: true, env: true, sys: ["hostname"] },
  async fn() {
    await using dir = await tempDir();
    const results = await ResultsStore.open(dir.path, { durable: false });
    const ledger = new Ledger(JOBS, "run1");
    const scheduler = new Scheduler(new JobQueue(JOBS), [PLAIN_CLASS], {}, { keyOf, ledger });
    const told: { job: number; key: string; status: number | null; durable: boolean; settled: boolean }[] = [];
    const recorder = new ResultRecorder(scheduler, results, list, keyOf, {
      retries: 1,
      onRecorded: (job, record) =>
        told.push({
          job,
          key: record.key,
          status: record.status,
          durable: readJournal(dir.path).some((r) => r.type === "job" && r.key === record.key),
          settled: ledger.isSettled(job),
        }),
    });
    await results.note({ type: "run", id: "run1", started: "t", source: "model", jobs: JOBS, pid: 1 });
    const runner = new ModelRunner("a", "ida");
    const link = runner.link = new FakeLink(runner, "run1");
    scheduler.onRunnerJoined(link);
    const deliver = async (status: number) => {
      scheduler.onJobRequest(link);
      const hand = runner.held.pop()!;
      const admission = recorder.admitNow(hand.job, hand.attempt, link);
      assert.equal(admission.kind, "accepted");
      if (admission.kind !== "accepted") return hand.job;
      const output = results.stageOutput();
      await recorder.record(admission.ticket, {
        link,
        rank: 1,
        status,
        handedOutAt: new Date().toISOString(),
        output,
        returned: [],
      });
      return hand.job;
    };
    const ok = await deliver(0);
    const retried = await deliver(1);
    assert.equal(ledger.isSettled(retried), false, "a failure with a retry left does not settle its job");
    const lost = [0, 1, 2, 3, 4, 5].find((j) => j !== ok && j !== retried)!;
    assert.equal(await recorder.lost(lost, "gone", link), true);
    await results.close();
    assert.deepEqual(told, [
      { job: ok, key: keyOf(ok), status: 0, durable: true, settled: false },
      { job: lost, key: keyOf(lost), status: null, durable: true, settled: false },
    ]);
  },
});

Deno.test({
  name: "ResultRecorder onRecorded: one that throws is logged; the durable record still settles its job",
  permissions: { read: true, write: true, env: true, sys: ["hostname"] },
  async fn() {
    await using dir = await tempDir();
    const results = await ResultsStore.open(dir.path, { durable: false });
    const ledger = new Ledger(JOBS, "run1");
    const scheduler = new Scheduler(new JobQueue(JOBS), [PLAIN_CLASS], {}, { keyOf, ledger });
    const recorder = new ResultRecorder(scheduler, results, list, keyOf, {
      onRecorded: () => {
        throw new Error("the joblog's disk is full");
      },
    });
    const runner = new ModelRunner("a", "ida");
    const link = runner.link = new FakeLink(runner, "run1");
    scheduler.onRunnerJoined(link);
    scheduler.onJobRequest(link);
    const hand = runner.held.pop()!;
    const admission = recorder.admitNow(hand.job, hand.attempt, link);
    assert.equal(admission.kind, "accepted");
    if (admission.kind !== "accepted") return;
    await recorder.record(admission.ticket, {
      link,
      rank: 1,
      status: 0,
      handedOutAt: new Date().toISOString(),
      output: results.stageOutput(),
      returned: [],
    });
    assert.equal(ledger.isSettled(hand.job), true, "the job settled");
    assert.equal(scheduler.queue.settled, 1);
    await results.close();
    assert.equal(readJournal(dir.path).filter((r) => r.type === "job").length, 1);
  },
});
