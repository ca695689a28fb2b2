import assert from "node:assert/strict";
import { type JobClass, PLAIN_CLASS } from "../../../manager/jobs/job_list.ts";
import { JobQueue } from "../../../manager/jobs/job_queue.ts";
import { type RunnerLink, Scheduler } from "../../../manager/scheduling/scheduler.ts";

type Said = number | `rank${number}:${number}` | "FINO" | "REFUSED" | "START" | "ABANDON";

/** A link that records what the scheduler told it. */
class RecordingLink implements RunnerLink {
  readonly peer = "test";
  readonly said: Said[] = [];
  constructor(readonly host: string, readonly modules: string[] | "text" = "text") {}
  accepts(cls: JobClass): boolean {
    if (this.modules === "text") return !cls.binaryOnly;
    return cls.modules.every((m) => this.modules.includes(m));
  }
  assign(job: number, rank: number) {
    this.said.push(rank > 1 ? `rank${rank}:${job}` : job);
  }
  release() {
    this.said.push("FINO");
  }
  refuse() {
    this.said.push("REFUSED");
  }
  start() {
    this.said.push("START");
  }
  abandon() {
    this.said.push("ABANDON");
  }
  take(): Said[] {
    return this.said.splice(0);
  }
}

function setup(jobs: number, classOf?: number[], classes: JobClass[] = [PLAIN_CLASS]) {
  const settled: number[] = [];
  const queue = new JobQueue(jobs, {
    classOf: classOf ? Uint16Array.from(classOf) : undefined,
    classes: classes.length,
  });
  const s = new Scheduler(queue, classes, { onSettled: (job) => settled.push(job) });
  const join = (host: string, modules: string[] | "text" = "text") => {
    const l = new RecordingLink(host, modules);
    s.onRunnerJoined(l);
    return l;
  };
  return { s, join, settled };
}

Deno.test({
  name: "Scheduler.onJobRequest() assigns jobs in order to whoever asks",
  permissions: "none",
  fn() {
    const { s, join } = setup(3);
    const a = join("a"), b = join("b");
    s.onJobRequest(a);
    s.onJobRequest(b);
    s.onJobRequest(a);
    assert.deepEqual(a.take(), [0, 2]);
    assert.deepEqual(b.take(), [1]);
  },
});

Deno.test({
  name: "Scheduler holds a request from an idle runner while jobs run elsewhere, and releases a busy one",
  permissions: "none",
  fn() {
    const { s, join } = setup(2);
    const a = join("a"), b = join("b"), c = join("c");
    s.onJobRequest(a);
    s.onJobRequest(a);
    assert.deepEqual(a.take(), [0, 1]);
    s.onJobRequest(b);
    assert.deepEqual(b.take(), [], "idle runner is held");
    s.onJobRequest(a);
    assert.deepEqual(a.take(), ["FINO"], "a runner holding jobs is released at once (its lock would deadlock)");
    s.onJobRequest(c);
    // a is lost: its jobs go to the held runners, oldest first.
    s.onRunnerLost(a);
    assert.deepEqual(b.take(), [0]);
    assert.deepEqual(c.take(), [1]);
  },
});

Deno.test({
  name: "Scheduler holds a busy runner's request when it reports while asking, and gives it a job that comes back",
  permissions: "none",
  fn() {
    const { s, join } = setup(1);
    const a = join("a");
    Object.assign(a, { reportsWhileAsking: true });
    s.onJobRequest(a);
    s.onJobRequest(a);
    assert.deepEqual(a.take(), [0], "the second request (another worker's) is held, not released");
    assert.equal(s.onJobRetry(a, 0), true, "its job fails and goes back for a retry");
    assert.deepEqual(a.take(), [0], "the held request takes it");
    s.onJobRequest(a);
    assert.deepEqual(a.take(), []);
    s.onJobSettled(a, 0, 0);
    assert.deepEqual(a.take(), ["FINO"], "released once nothing more may come");
  },
});

Deno.test({
  name: "Scheduler releases every held runner when the last job settles",
  permissions: "none",
  async fn() {
    const { s, join, settled } = setup(1);
    const a = join("a"), b = join("b");
    s.onJobRequest(a);
    s.onJobRequest(b);
    assert.deepEqual(b.take(), []);
    s.onJobSettled(a, 0, 0);
    assert.deepEqual(b.take(), ["FINO"]);
    assert.deepEqual(settled, [0]);
    await s.done;
  },
});

Deno.test({
  name: "Scheduler never settles a job twice nor loses one when a runner dies mid-result",
  permissions: "none",
  fn() {
    const { s, join, settled } = setup(2);
    const a = join("a"), b = join("b");
    s.onJobRequest(a);
    s.onJobRequest(a);
    s.onRunnerLost(a); // died while sending job 0's output
    assert.equal(s.queue.pending, 2);
    s.onJobRequest(b);
    s.onJobRequest(b);
    assert.deepEqual(b.take(), [0, 1]);
    assert.equal(s.queue.attempts(0), 2, "the second hand-out is attempt 2");
    // What may settle is the ledger's call: b's attempt 2 does, once.
    const first = s.ledger.claim(0, 2);
    assert.equal(first.kind, "accepted");
    if (first.kind === "accepted") s.ledger.settle(first.ticket);
    s.onJobSettled(b, 0, 0);
    assert.equal(s.ledger.claim(0, 2).kind, "duplicate", "the same attempt again");
    assert.equal(s.ledger.claim(0, 1).kind, "duplicate", "a stale result of the lost runner's attempt 1");
    assert.equal(s.onJobSettled(b, 0, 0), false, "settling twice changes nothing");
    assert.deepEqual(settled, [0]);
    assert.equal(s.queue.settled, 1);
    assert.equal(s.queue.running, 1, "job 1 is still out on b: nothing lost");
  },
});

const SH: JobClass = { modules: ["sh"], binaryOnly: true, nodes: 1 };
const MATLAB: JobClass = { modules: ["matlab"], binaryOnly: true, nodes: 1 };
const GANG3: JobClass = { modules: [], binaryOnly: true, nodes: 3 };

Deno.test({
  name: "Scheduler gives each runner only the classes it can carry, in list order",
  permissions: "none",
  fn() {
    // jobs: 0 plain, 1 sh, 2 matlab, 3 plain
    const { s, join } = setup(4, [0, 1, 2, 0], [PLAIN_CLASS, SH, MATLAB]);
    const text = join("text");
    const node = join("node", ["sh"]);
    s.onJobRequest(node);
    assert.deepEqual(node.take(), [0], "a binary node takes plain jobs too");
    s.onJobRequest(text);
    assert.deepEqual(text.take(), [3], "a text runner skips bundles");
    s.onJobRequest(node);
    assert.deepEqual(node.take(), [1]);
    const other = join("other", ["sh"]);
    s.onJobRequest(other);
    assert.deepEqual(other.take(), [], "held: plain and sh jobs it could take still run elsewhere");
    s.onJobRequest(text);
    assert.deepEqual(text.take(), ["FINO"], "a text runner holding a job is released");
    assert.deepEqual(s.unservedClasses(), [2], "nobody connected can take the matlab job");
    s.onJobSettled(node, 0, 0);
    s.onJobSettled(text, 3, 0);
    s.onJobSettled(node, 1, 0);
    assert.deepEqual(other.take(), ["REFUSED"], "only the matlab job remains: refused, with a reason");
  },
});

Deno.test({
  name: "Scheduler holds an idle text runner only while a plain job may still come back",
  permissions: "none",
  fn() {
    const { s, join } = setup(2, [0, 1], [PLAIN_CLASS, SH]);
    const t1 = join("t1"), t2 = join("t2"), node = join("node", ["sh"]);
    s.onJobRequest(t1);
    s.onJobRequest(node);
    assert.deepEqual(node.take(), [1]);
    s.onJobRequest(t2);
    assert.deepEqual(t2.take(), [], "held: job 0 runs on t1 and may be requeued");
    s.onJobSettled(t1, 0, 0);
    // Jobs remain, none for t2: refused (a text session answers that with FINO).
    assert.deepEqual(t2.take(), ["REFUSED"], "no plain job can come back, though a bundle still runs");
  },
});

Deno.test({
  name: "Scheduler assembles a gang of 3 and starts all members together",
  permissions: "none",
  fn() {
    const { s, join, settled } = setup(2, [1, 0], [PLAIN_CLASS, GANG3]);
    const [a, b, c, d] = ["a", "b", "c", "d"].map((h) => join(h, []));
    s.onJobRequest(a);
    s.onJobRequest(b);
    s.onJobRequest(d);
    s.onJobRequest(c);
    assert.deepEqual([a.take(), b.take(), d.take()], [[0], ["rank2:0"], ["rank3:0"]]);
    assert.deepEqual(c.take(), [1], "the gang is full; the next job goes on");
    s.onReadyToStart(a, 0);
    s.onReadyToStart(d, 0);
    assert.deepEqual([a.take(), d.take()], [[], []], "nobody starts before all are ready");
    s.onReadyToStart(b, 0);
    assert.deepEqual([a.take(), b.take(), d.take()], [["START"], ["START"], ["START"]]);
    assert.ok(s.onJobSettled(b, 0, 0));
    assert.deepEqual(settled, [0]);
    assert.deepEqual(s.jobsOf(a).size + s.jobsOf(d).size, 0, "settled once for every member");
    assert.equal(s.settledByHost.get("a"), 1);
  },
});

Deno.test({
  name: "Scheduler abandons a gang that loses a member and requeues its job once",
  permissions: "none",
  fn() {
    const { s, join } = setup(1, [1], [PLAIN_CLASS, GANG3]);
    const [a, b, c] = ["a", "b", "c"].map((h) => join(h, []));
    for (const l of [a, b, c]) s.onJobRequest(l);
    for (const l of [a, b, c]) l.take();
    s.onReadyToStart(a, 0);
    s.onRunnerLost(b);
    assert.deepEqual([a.take(), c.take()], [["ABANDON"], ["ABANDON"]]);
    assert.equal(s.queue.pending, 1);
    assert.equal(s.queue.attempts(0), 1);
    s.onRunnerLost(a);
    s.onRunnerLost(c);
    assert.equal(s.queue.pending, 1, "still queued once");
    const [x, y, z] = ["x", "y", "z"].map((h) => join(h, []));
    for (const l of [x, y]) s.onJobRequest(l);
    assert.deepEqual(x.take(), [0]);
    s.onJobRequest(z);
    assert.deepEqual(z.take(), ["rank3:0"]);
    assert.equal(s.queue.attempts(0), 2);
  },
});

Deno.test({
  name: "Scheduler pulls held nodes into a new gang",
  permissions: "none",
  fn() {
    // job 0 plain (runs on p), job 1 gang of 3 after it
    const { s, join } = setup(2, [0, 1], [PLAIN_CLASS, GANG3]);
    const p = join("p", []);
    s.onJobRequest(p);
    assert.deepEqual(p.take(), [0]);
    const [a, b, c] = ["a", "b", "c"].map((h) => join(h, []));
    s.onJobRequest(a);
    s.onJobRequest(b);
    s.onJobRequest(c);
    assert.deepEqual([a.take(), b.take(), c.take()], [[1], ["rank2:1"], ["rank3:1"]]);
  },
});

Deno.test({
  name: "Scheduler.onRunnerLost() without blame: an identified runner's jobs go back at once, no lease, no loss",
  permissions: "none",
  fn() {
    const queue = new JobQueue(1);
    const leased: string[] = [];
    const lost: number[] = [];
    const s = new Scheduler(queue, [PLAIN_CLASS], {
      onLeased: (id) => leased.push(id),
      onLost: (job) => lost.push(job),
    }, { maxAttempts: 1, leaseMs: 60_000 });
    const forger = Object.assign(new RecordingLink("f"), { runnerId: "f" });
    s.onRunnerJoined(forger);
    s.onJobRequest(forger);
    assert.deepEqual(forger.take(), [0]);
    s.onRunnerLost(forger, false); // it broke the protocol
    assert.deepEqual([leased, lost, queue.losses(0), queue.pending], [[], [], 0, 1]);
    // Coming back, or its lease running out, costs the job nothing either.
    const back = Object.assign(new RecordingLink("f"), { runnerId: "f" });
    s.onRunnerJoined(back);
    s.expireLease("f");
    assert.deepEqual([lost, queue.losses(0)], [[], 0]);
    s.onJobRequest(back);
    assert.deepEqual(back.take(), [0]);
  },
});
