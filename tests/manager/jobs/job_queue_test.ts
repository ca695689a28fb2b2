import assert from "node:assert/strict";
import { JobQueue, JobState } from "../../../manager/jobs/job_queue.ts";

Deno.test({
  name: "JobQueue hands out jobs in order and puts requeued ones at the front",
  permissions: "none",
  fn() {
    const q = new JobQueue(4);
    assert.deepEqual([q.take(), q.take(), q.take()], [0, 1, 2]);
    q.requeue(1);
    q.requeue(0);
    assert.deepEqual([q.pending, q.running], [3, 1]);
    assert.deepEqual([q.take(), q.take(), q.take(), q.take()], [0, 1, 3, -1]);
    assert.equal(q.attempts(0), 2);
    assert.equal(q.attempts(3), 1);
  },
});

Deno.test({
  name: "JobQueue settles a job once and skips jobs settled earlier",
  permissions: "none",
  fn() {
    const q = new JobQueue(3, { settled: (job) => job === 1 });
    assert.equal(q.settled, 1);
    assert.equal(q.stateOf(1), JobState.SETTLED);
    const a = q.take();
    assert.equal(a, 0);
    assert.ok(q.settle(a));
    assert.ok(!q.settle(a), "second settle refused");
    q.requeue(a);
    assert.equal(q.stateOf(a), JobState.SETTLED, "a settled job is never requeued");
    assert.equal(q.take(), 2);
    assert.ok(q.settle(2));
    assert.ok(q.done);
  },
});

Deno.test({
  name: "JobQueue of a million jobs costs a few megabytes and O(1) per dispatch",
  permissions: "none",
  fn() {
    const q = new JobQueue(1_000_000);
    for (let i = 0; i < 1_000_000; i++) {
      const j = q.take();
      if (i % 3 === 0) q.requeue(j);
      else q.settle(j);
    }
    assert.equal(q.pending + q.settled, 1_000_000);
  },
});

Deno.test({
  name: "JobQueue.take() picks the oldest pending job among the classes a runner accepts",
  permissions: "none",
  fn() {
    const q = new JobQueue(6, { classOf: Uint16Array.of(0, 1, 0, 2, 1, 0) });
    assert.equal(q.take((c) => c === 1), 1);
    assert.equal(q.take((c) => c !== 0), 3);
    assert.equal(q.take(), 0);
    q.requeue(1);
    assert.equal(q.take(), 1, "a requeued job is older than every other head");
    assert.equal(q.take((c) => c === 2), -1);
    assert.deepEqual([q.unsettledIn(0), q.unsettledIn(1), q.unsettledIn(2)], [3, 2, 1]);
    assert.deepEqual([q.pendingIn(0), q.pendingIn(1), q.pendingIn(2)], [2, 1, 0]);
    q.settle(3);
    assert.equal(q.unsettledIn(2), 0);
  },
});
