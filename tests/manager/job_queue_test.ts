import assert from "node:assert/strict";
import { JobQueue, JobState } from "../../manager/job_queue.ts";

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
    const q = new JobQueue(3, (job) => job === 1);
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
    assert.ok(q.finished);
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
