import assert from "node:assert/strict";
import { Quarantine, type QuarantineOptions, type Verdict } from "../../../manager/scheduling/quarantine.ts";

Deno.test({
  name: "Quarantine.onResult gives a host that fails fast a break, then quarantines it when it fails again alone",
  permissions: "none",
  fn() {
    const q = new Quarantine({ streak: 3, fastMs: 100, initialMs: 1000, maxMs: 4000, pauseMs: 50 });
    assert.deepEqual(q.onResult("good", 0, 0, 50, 0).record, [0]);
    assert.equal(q.onResult("bad", 1, 127, 5, 1).held, true);
    assert.equal(q.onResult("bad", 2, 127, 5, 2).held, true);
    const paused = q.onResult("bad", 3, 127, 5, 3);
    assert.deepEqual(
      paused,
      { record: [], requeue: [], held: true, pause: { until: 53 } },
      "a streak alone is no proof",
    );
    assert.deepEqual(q.onResult("good", 4, 0, 20, 30).record, [4]);
    assert.deepEqual(q.onResult("bad", 5, 127, 40, 45), { record: [], requeue: [], held: true }, "handed out before");
    const v = q.onResult("bad", 6, 127, 5, 60);
    assert.deepEqual(v.requeue, [1, 2, 3, 5, 6]);
    assert.deepEqual(v.record, []);
    assert.equal(v.quarantine!.until, 1060);
    assert.match(
      v.quarantine!.reason,
      /^its last 3 jobs failed \(exit 127\) within 100 ms while other runners succeed, and it failed again after a 1s break in which other runners succeeded and none failed fast$/,
    );
    assert.ok(q.isQuarantined("bad", 1059));
    assert.ok(!q.isQuarantined("bad", 1061));
    for (const job of [7, 8]) q.onResult("bad", job, 127, 5, 2000);
    assert.ok(q.onResult("bad", 9, 127, 5, 2000).pause);
    q.onResult("good", 11, 0, 20, 2030);
    assert.equal(q.onResult("bad", 10, 127, 5, 2100).quarantine!.until, 4100, "second quarantine doubles");
  },
});

Deno.test({
  name: "Quarantine.onResult does not count the break against the jobs the host had running when it began",
  permissions: "none",
  fn() {
    const q = new Quarantine({ streak: 2, fastMs: 100, pauseMs: 1000 });
    q.onResult("good", 0, 0, 50, 0);
    q.onResult("bad", 1, 127, 5, 10);
    assert.ok(q.onResult("bad", 2, 127, 5, 20).pause);
    q.onResult("good", 5, 0, 50, 500);
    // Its other worker's job failed at once, but is only read once the break is over.
    assert.deepEqual(q.onResult("bad", 3, 127, 1015, 1020), { record: [], requeue: [], held: true });
    assert.ok(q.onResult("bad", 4, 127, 5, 1030).quarantine);
  },
});

Deno.test({
  name: "Quarantine.onResult clears a suspect host when a host in good standing fails fast during its break",
  permissions: "none",
  fn() {
    const q = new Quarantine({ streak: 2, fastMs: 100, pauseMs: 50 });
    q.onResult("b", 0, 0, 5, 0);
    q.onResult("a", 1, 1, 5, 1);
    assert.ok(q.onResult("a", 3, 1, 5, 2).pause);
    assert.deepEqual(q.onResult("b", 2, 0, 5, 10).record, [2]);
    const v = q.onResult("b", 5, 1, 5, 20);
    assert.deepEqual(v, { record: [1, 3], requeue: [], held: true }, "a's failures are the list's own: recorded");
    // a now needs twice the streak: two more fast failures are not enough to suspect it again.
    assert.deepEqual(q.onResult("a", 7, 1, 5, 60), { record: [], requeue: [], held: true });
    assert.deepEqual(q.onResult("a", 9, 1, 5, 61), { record: [], requeue: [], held: true });
  },
});

Deno.test({
  name: "Quarantine.onResult quarantines a host whose fast failures then succeeded elsewhere",
  permissions: "none",
  fn() {
    const q = new Quarantine({ streak: 5, fastMs: 100, initialMs: 1000 });
    q.onResult("good", 0, 0, 5, 0);
    q.onResult("bad", 1, 127, 5, 1);
    q.onResult("bad", 2, 127, 5, 2);
    assert.deepEqual(q.expire(10_000), [1, 2], "recorded as failures (with --retries they run again)");
    assert.deepEqual(q.onResult("good", 1, 0, 5, 10_001).record, [1]);
    assert.ok(!q.onResult("bad", 3, 127, 5, 10_002).quarantine, "one could be a flaky job");
    assert.deepEqual(q.onResult("good", 2, 0, 5, 10_003).record, [2]);
    const v = q.onResult("bad", 4, 127, 5, 10_004);
    assert.deepEqual(v.requeue, [3, 4]);
    assert.equal(v.quarantine!.until, 11_004);
    assert.match(v.quarantine!.reason, /^2 jobs that failed fast on it succeeded elsewhere \(last on good\)$/);
  },
});

Deno.test({
  name: "Quarantine.onResult forgets fast failures succeeded elsewhere once the host succeeds itself",
  permissions: "none",
  fn() {
    const q = new Quarantine({ streak: 5, fastMs: 100 });
    for (const job of [1, 2]) q.onResult("a", job, 1, 5, job);
    q.onResult("a", 3, 0, 5, 3);
    for (const job of [1, 2]) q.onResult("b", job, 0, 5, 10 + job);
    assert.ok(!q.onResult("a", 4, 1, 5, 20).quarantine);
  },
});

/**
 * Two one-worker runners taking turns on a list where every odd job fails
 * at once: runner "a" is handed every failure in a row (the lock-in seen on
 * real runs). Each result takes `took` ms; a paused host takes nothing until
 * its break ends. Returns every verdict.
 */
function takeTurns(jobs: number, options: Partial<QuarantineOptions>, took = 10): Verdict[] {
  const q = new Quarantine(options);
  const queue = Array.from({ length: jobs }, (_, i) => i);
  const free = new Map([["b", 0], ["a", 0]]);
  const verdicts: Verdict[] = [];
  while (queue.length > 0) {
    const [host, at] = [...free].sort((x, y) => x[1] - y[1])[0];
    const job = queue.shift()!;
    const v = q.onResult(host, job, job % 2, took, at + took);
    verdicts.push(v);
    queue.unshift(...v.requeue);
    free.set(host, Math.max(at + took, v.pause?.until ?? 0, v.quarantine?.until ?? 0));
  }
  verdicts.push({ record: q.release(), requeue: [], held: false });
  return verdicts;
}

Deno.test({
  name: "Quarantine.onResult quarantines nobody in a healthy fleet where half the list fails fast legitimately",
  permissions: "none",
  fn() {
    const verdicts = takeTurns(200, { streak: 5, fastMs: 100, pauseMs: 35 });
    assert.ok(verdicts.some((v) => v.pause), "runner a was given a break");
    assert.deepEqual(verdicts.filter((v) => v.quarantine), []);
    assert.deepEqual(verdicts.flatMap((v) => v.requeue), [], "no failure runs twice");
    const recorded = verdicts.flatMap((v) => v.record).sort((x, y) => x - y);
    assert.deepEqual(recorded, Array.from({ length: 200 }, (_, i) => i), "each job recorded once");
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
    const q = new Quarantine({ streak: 2, fastMs: 100, initialMs: 1000, pauseMs: 10 });
    q.onResult("good", 0, 0, 50, 0);
    q.onResult("bad", 1, 127, 5, 1);
    assert.ok(q.onResult("bad", 2, 127, 5, 2).pause);
    q.onResult("good", 5, 0, 5, 8);
    assert.ok(q.onResult("bad", 3, 127, 5, 20).quarantine);
    assert.deepEqual(q.onResult("bad", 4, 127, 5, 21), { record: [], requeue: [4], held: true });
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

Deno.test({
  name:
    "Quarantine.onResult quarantines nobody when the whole fleet fails fast (the tail of a run of retried failures)",
  permissions: "none",
  fn() {
    // Four healthy one-worker hosts; jobs 0-39 succeed, then only failures
    // (the list's own, retried at the back of the queue) are left.
    const q = new Quarantine({ streak: 5, fastMs: 500, pauseMs: 1000, initialMs: 60_000 });
    const hosts = ["r0", "r1", "r2", "r3"];
    let now = 0;
    for (let job = 0; job < 40; job++) q.onResult(hosts[job % 4], job, 0, 100, now += 25);
    const quarantined = new Set<string>();
    for (let job = 40; job < 200; job++) {
      const v = q.onResult(hosts[job % 4], job, 3, 20, now += 20);
      if (v.quarantine !== undefined) quarantined.add(hosts[job % 4]);
    }
    assert.deepEqual([...quarantined], [], "no runner is a black hole here");
  },
});
