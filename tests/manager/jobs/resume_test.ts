import assert from "node:assert/strict";
import { planResume } from "../../../manager/jobs/resume.ts";

Deno.test({
  name: "planResume() matches by key: settled are skipped, gone are counted, unfinished are named",
  permissions: "none",
  fn() {
    const keys = ["a-1", "b-1", "c-1", "a-2"];
    const plan = planResume(keys.length, {
      settled: new Map([["a-1", 0], ["c-1", 3], ["z-1", 0], ["y-1", null]]),
      assigned: new Map([["b-1", { runner: "r1", host: "h1", at: "t", run: "r0", attempt: 1 }]]),
      issued: new Map([["b-1", [{ runner: "r1", host: "h1", at: "t", run: "r0", attempt: 1 }]]]),
      attempts: new Map([["b-1", 1], ["a-1", 1], ["c-1", 2]]),
      failures: new Map([["c-1", 1]]),
      suspects: new Map(),
      runs: 1,
      runIds: ["r0"],
    }, (job) => keys[job]);
    assert.deepEqual([...plan.settled], [1, 0, 1, 0]);
    assert.deepEqual(
      [plan.skipped, plan.failedEarlier, plan.toRun, plan.unfinished, plan.gone],
      [2, 1, 2, 1, 2],
    );
    assert.deepEqual([...plan.heldBy], [[1, { runner: "r1", host: "h1" }]]);
    const empty = planResume(3, {
      settled: new Map(),
      assigned: new Map(),
      issued: new Map(),
      attempts: new Map(),
      failures: new Map(),
      suspects: new Map(),
      runs: 0,
      runIds: [],
    }, () => "k");
    assert.equal(empty.toRun, 3);
  },
});
