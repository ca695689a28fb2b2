import assert from "node:assert/strict";
import { JobQueue } from "../../manager/job_queue.ts";
import { type RunnerLink, Scheduler } from "../../manager/scheduler.ts";

/** A link that records what the scheduler told it. */
class RecordingLink implements RunnerLink {
  readonly peer = "test";
  readonly said: (number | "FINO")[] = [];
  constructor(readonly host: string) {}
  assign(job: number) {
    this.said.push(job);
  }
  release() {
    this.said.push("FINO");
  }
  take(): (number | "FINO")[] {
    return this.said.splice(0);
  }
}

function setup(jobs: number) {
  const settled: number[] = [];
  const s = new Scheduler(new JobQueue(jobs), { onSettled: (job) => settled.push(job) });
  const join = (host: string) => {
    const l = new RecordingLink(host);
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
  name: "Scheduler releases every held runner when the last job settles",
  permissions: "none",
  async fn() {
    const { s, join, settled } = setup(1);
    const a = join("a"), b = join("b");
    s.onJobRequest(a);
    s.onJobRequest(b);
    assert.deepEqual(b.take(), []);
    const job = s.claimResult(a, (j) => j === 0);
    assert.equal(job, 0);
    s.onJobSettled(a, 0, 0);
    assert.deepEqual(b.take(), ["FINO"]);
    assert.deepEqual(settled, [0]);
    await s.done;
  },
});

Deno.test({
  name: "Scheduler.claimResult() matches only jobs the runner holds, each instance once",
  permissions: "none",
  fn() {
    const { s, join } = setup(3);
    const a = join("a"), b = join("b");
    s.onJobRequest(a);
    s.onJobRequest(a);
    s.onJobRequest(b);
    const same = () => true;
    assert.equal(s.claimResult(b, (j) => j === 0), undefined, "b does not hold job 0");
    assert.equal(s.claimResult(a, same), 0);
    assert.equal(s.claimResult(a, same), 1, "a second result claims the other instance");
    assert.equal(s.claimResult(a, same), undefined);
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
    s.claimResult(a, (j) => j === 0);
    s.onRunnerLost(a); // died while sending job 0's output
    assert.equal(s.queue.pending, 2);
    s.onJobRequest(b);
    s.onJobRequest(b);
    assert.deepEqual(b.take(), [0, 1]);
    s.claimResult(b, (j) => j === 0);
    s.onJobSettled(b, 0, 0);
    s.onJobSettled(b, 0, 0);
    s.onJobSettled(a, 1, 0); // a stale result from the lost runner
    assert.deepEqual(settled, [0]);
    assert.equal(s.queue.settled, 1);
  },
});
