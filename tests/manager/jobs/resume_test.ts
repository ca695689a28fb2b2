import assert from "node:assert/strict";
import { checkSameList, planReopen, planResume } from "../../../manager/jobs/resume.ts";
import { ResultsDirError } from "../../../manager/results/results_dir.ts";
import type { JournalState } from "../../../manager/results/results_store.ts";

/** An empty journal state. */
const blank = (): JournalState => ({
  settled: new Map(),
  assigned: new Map(),
  issued: new Map(),
  attempts: new Map(),
  failures: new Map(),
  suspects: new Map(),
  failedSettled: new Map(),
  reopened: new Set(),
  runs: 0,
  runIds: [],
});

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
      failedSettled: new Map(),
      reopened: new Set(),
      runs: 1,
      runIds: ["r0"],
    }, (job) => keys[job]);
    assert.deepEqual([...plan.settled], [1, 0, 1, 0]);
    assert.deepEqual(
      [plan.skipped, plan.failedEarlier, plan.toRun, plan.unfinished, plan.gone],
      [2, 1, 2, 1, 2],
    );
    assert.deepEqual([...plan.carriedBy], [[1, { runner: "r1", host: "h1" }]]);
    const empty = planResume(3, blank(), () => "k");
    assert.equal(empty.toRun, 3);
  },
});

Deno.test({
  name: "planReopen() names the jobs of the list whose settlement failed or was lost, with what it said",
  permissions: "none",
  fn() {
    const keys = ["ok-1", "bad-1", "lost-1", "open-1"];
    const state = blank();
    state.settled = new Map([["ok-1", 0], ["bad-1", 3], ["lost-1", null], ["gone-1", 9]]);
    state.failedSettled = new Map([
      ["bad-1", { key: "bad-1", status: 3, host: "h1", attempt: 2, timedOut: true }],
      ["lost-1", { key: "lost-1", status: null, host: "h2", attempt: 3 }],
      ["gone-1", { key: "gone-1", status: 9, host: "h1", attempt: 1 }],
    ]);
    const plans = planReopen(keys.length, state, (job) => keys[job], (job) => 10 + job);
    assert.deepEqual(plans, [
      { job: 1, record: { key: "bad-1", status: 3, host: "h1", attempt: 2, timedOut: true, line: 11 } },
      { job: 2, record: { key: "lost-1", status: null, host: "h2", attempt: 3, line: 12 } },
    ], "a key no longer in the list is left alone");
    assert.deepEqual(planReopen(keys.length, blank(), (job) => keys[job], () => 1), []);
  },
});

Deno.test({
  name: "planResume() after a reopen: the key runs again, its attempt numbers going on",
  permissions: "none",
  fn() {
    const state = blank();
    // What the journal "job bad-1 (attempt 2, status 3)" then "reopen bad-1" folds to.
    state.attempts = new Map([["bad-1", 2]]);
    state.reopened = new Set(["bad-1"]);
    const plan = planResume(1, state, () => "bad-1");
    assert.deepEqual([plan.settled[0], plan.attempts[0], plan.failures[0], plan.toRun], [0, 2, 0, 1]);
  },
});

Deno.test({
  name: "checkSameList() lets a list by any path have its directory and refuses another list's, naming both",
  permissions: "none",
  fn() {
    // The same file name is the same list, however it was given; a directory no run named a list for is free.
    for (const [owner, source] of [["jobs.txt", "jobs.txt"], ["./jobs.txt", "/abs/dir/jobs.txt"], [undefined, "x"]]) {
      checkSameList(owner, source!, "jobs.results");
    }
    const refused = (owner: string, source: string, dir: string) => {
      try {
        checkSameList(owner, source, dir);
      } catch (err) {
        assert.ok(err instanceof ResultsDirError, String(err));
        assert.equal(err.code, "REFUSED");
        assert.equal(err.problem, "another-list");
        return err.message;
      }
      assert.fail(`${source} was given ${owner}'s ${dir}`);
    };
    assert.equal(
      refused("jobs.txt", "lists/jobs.jsonl", "lists/jobs.results"),
      "lists/jobs.results holds the results of jobs.txt, not jobs.jsonl: give this list its own with --results DIR",
    );
    assert.match(refused("/a/jobs", "/a/jobs.txt", "/a/jobs.results"), /holds the results of jobs, not jobs\.txt:/);
    assert.match(refused("-", "jobs.txt", "jobs.results"), /holds the results of standard input, not jobs\.txt:/);
  },
});
