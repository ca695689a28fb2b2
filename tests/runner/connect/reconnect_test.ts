/** One connection loop's retry-or-finish step, with its sleeps recorded instead of slept. */

import assert from "node:assert/strict";
import { Reconnect } from "../../../runner/connect/reconnect.ts";

function reconnect(persist: boolean, jobs = 0, stopping = false) {
  const sleeps: number[] = [];
  const downs: string[] = [];
  const r = new Reconnect({
    initialMs: 100,
    maxMs: 400,
    sleep: (ms) => {
      sleeps.push(ms);
      return Promise.resolve();
    },
    onDown: (why) => downs.push(why),
    persist,
    stopping: () => stopping,
    jobs: () => jobs,
  });
  return { r, sleeps, downs };
}

Deno.test("Reconnect.after: a backoff step reports its retry reason and waits longer each time, up to the longest", async () => {
  const { r, sleeps, downs } = reconnect(true);
  for (let i = 0; i < 4; i++) {
    assert.equal(
      await r.after({ outcome: "lost", reason: "reset", retryReason: "Lost the manager: reset" }),
      undefined,
    );
  }
  assert.deepEqual(downs, Array(4).fill("Lost the manager: reset"));
  assert.equal(r.backoff.down, "Lost the manager: reset");
  const bounds = [[50, 100], [100, 200], [200, 400], [200, 400]];
  sleeps.forEach((ms, i) => assert.ok(ms >= bounds[i][0] && ms <= bounds[i][1], `wait ${i}: ${ms}`));
});

Deno.test("Reconnect.after: a reset step starts the backoff again; an idle step says why and waits the longest", async () => {
  const { r, sleeps } = reconnect(true);
  await r.after({ outcome: "unreachable", reason: "no route" });
  await r.after({ outcome: "unreachable", reason: "no route" });
  assert.equal(await r.after({ outcome: "taskDone" }), undefined);
  assert.equal(r.backoff.down, undefined);
  let told = 0;
  assert.equal(await r.after({ outcome: "goodbye", onIdle: () => told++ }), undefined);
  assert.equal(told, 1);
  await r.after({ outcome: "unreachable", reason: "no route" });
  assert.equal(sleeps.length, 4);
  assert.equal(sleeps[2], 400, "the idle pause is the longest wait");
  assert.ok(sleeps[3] <= 100, `the first wait after a reset, got ${sleeps[3]}`);
});

Deno.test("Reconnect.after: a finishing step ends at once with the loop's jobs, and afterWork once it has any", async () => {
  const idle = reconnect(false);
  assert.deepEqual(await idle.r.after({ outcome: "unreachable", reason: "no route" }), {
    kind: "failed",
    reason: "no route",
    jobs: 0,
  });
  assert.deepEqual(idle.sleeps, []);
  const worked = reconnect(false, 2);
  assert.deepEqual(await worked.r.after({ outcome: "ownerGone", reason: "closed" }), { kind: "finished", jobs: 2 });
  const stopping = reconnect(true, 1, true);
  assert.deepEqual(await stopping.r.after({ outcome: "sessionFailed", reason: "x" }), { kind: "stopped", jobs: 1 });
  assert.deepEqual(await stopping.r.after({ outcome: "rejected", reason: "no", auth: true }), {
    kind: "refused",
    reason: "no",
    auth: true,
  });
});
