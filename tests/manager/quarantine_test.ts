import assert from "node:assert/strict";
import { Quarantine } from "../../manager/quarantine.ts";

Deno.test({
  name: "Quarantine holds fast failures and quarantines a host when others succeed, doubling each time",
  permissions: "none",
  fn() {
    const q = new Quarantine({ streak: 3, fastMs: 100, initialMs: 1000, maxMs: 4000 });
    assert.deepEqual(q.onResult("good", 0, 0, 50, 0).record, [0]);
    assert.equal(q.onResult("bad", 1, 127, 5, 1).held, true);
    assert.equal(q.onResult("bad", 2, 127, 5, 2).held, true);
    const v = q.onResult("bad", 3, 127, 5, 3);
    assert.deepEqual(v.requeue, [1, 2, 3]);
    assert.deepEqual(v.record, []);
    assert.equal(v.quarantine!.until, 1003);
    assert.match(v.quarantine!.reason, /last 3 jobs failed \(exit 127\) within 100 ms while other runners succeed/);
    assert.ok(q.isQuarantined("bad", 1002));
    assert.ok(!q.isQuarantined("bad", 1004));
    for (const job of [4, 5]) q.onResult("bad", job, 127, 5, 2000);
    assert.equal(q.onResult("bad", 6, 127, 5, 2000).quarantine!.until, 4000, "second quarantine doubles");
  },
});

Deno.test({
  name: "Quarantine records fast failures as genuine when no other host succeeds, or after a success",
  permissions: "none",
  fn() {
    const q = new Quarantine({ streak: 2, fastMs: 100 });
    q.onResult("a", 0, 1, 5, 0);
    assert.deepEqual(q.onResult("a", 1, 1, 5, 1).record, [0, 1], "fails everywhere: recorded failed");
    q.onResult("b", 2, 1, 5, 2);
    assert.deepEqual(q.onResult("b", 3, 0, 5, 3).record, [2, 3], "a success flushes the suspects");
    assert.deepEqual(q.onResult("b", 4, 1, 500, 4).record, [4], "a slow failure is not suspect");
  },
});

Deno.test({
  name: "Quarantine never holds a suspect longer than its hold time, and can be turned off",
  permissions: "none",
  fn() {
    const q = new Quarantine({ streak: 5, fastMs: 100, holdMs: 1000 });
    q.onResult("a", 7, 127, 5, 0);
    assert.deepEqual(q.expire(500), []);
    assert.deepEqual(q.expire(1000), [7]);
    const off = new Quarantine({ streak: 0 });
    assert.deepEqual(off.onResult("a", 1, 127, 1, 0), { record: [1], requeue: [], held: false });
  },
});

Deno.test({
  name: "Quarantine sends a quarantined host's late fast failure straight back to the queue",
  permissions: "none",
  fn() {
    const q = new Quarantine({ streak: 2, fastMs: 100, initialMs: 1000 });
    q.onResult("good", 0, 0, 50, 0);
    q.onResult("bad", 1, 127, 5, 1);
    assert.ok(q.onResult("bad", 2, 127, 5, 2).quarantine);
    assert.deepEqual(q.onResult("bad", 3, 127, 5, 3), { record: [], requeue: [3], held: true });
  },
});

Deno.test({
  name: "Quarantine.release lets go of every held suspect at once",
  permissions: "none",
  fn() {
    const q = new Quarantine({ streak: 5, fastMs: 100, holdMs: 60_000 });
    q.onResult("a", 1, 127, 5, 0);
    q.onResult("b", 2, 3, 5, 0);
    assert.deepEqual(q.release().sort(), [1, 2]);
    assert.deepEqual(q.release(), []);
    assert.deepEqual(q.expire(120_000), [], "released suspects are not expired again");
  },
});
