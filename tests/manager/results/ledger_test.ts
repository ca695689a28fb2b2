import assert from "node:assert/strict";
import { Ledger } from "../../../manager/results/ledger.ts";

Deno.test("Ledger.hasResult: true once the job is settled, or once that attempt delivered (a retry pending); not for an open attempt", () => {
  const ledger = new Ledger(2, "run-a");
  ledger.issue(0, { attempt: 1, runner: "r1", run: "run-a" }, "k0");
  ledger.issue(1, { attempt: 1, runner: "r1", run: "run-a" }, "k1");
  assert.equal(ledger.hasResult(0, 1), false, "issued, not delivered");
  const first = ledger.claim(0, 1, "r1");
  assert.ok(first.kind === "accepted");
  ledger.consume(first.ticket); // a failure recorded as an attempt: the job is retried
  assert.equal(ledger.hasResult(0, 1), true, "that attempt delivered");
  assert.equal(ledger.hasResult(0, 2), false, "the retry has not");
  assert.equal(ledger.wants("r1", "run-a", 0, 1), false);
  const other = ledger.claim(1, 1, "r1");
  assert.ok(other.kind === "accepted");
  ledger.settle(other.ticket);
  assert.equal(ledger.hasResult(1, 1), true, "settled");
  assert.equal(ledger.hasResult(1, 7), true, "settled: whatever attempt");
});

Deno.test("Ledger.jobOfKey: a key of a job never issued is found too, and a settled one's; issued keys are found without the index of every key", () => {
  const asked: number[] = [];
  const keyOf = (job: number) => {
    asked.push(job);
    return `k${job}`;
  };
  const ledger = new Ledger(3, "run-a", [], undefined, keyOf);
  ledger.issue(1, { attempt: 1, runner: "r1", run: "run-a" }, "k1");
  assert.equal(ledger.jobOfKey("k1"), 1, "issued: found");
  assert.deepEqual(asked, [], "an issued key needs no look over the list");
  assert.equal(ledger.issuedJobOfKey("k0"), undefined, "never issued: not an issued job");
  assert.equal(ledger.jobOfKey("k0"), 0, "never issued: found all the same");
  assert.equal(ledger.jobOfKey("k9"), undefined, "no such job");
  assert.deepEqual(asked, [0, 1, 2], "the index of every key is made once, when first needed");
  const c = ledger.claim(1, 1, "r1");
  assert.ok(c.kind === "accepted");
  ledger.settle(c.ticket);
  assert.equal(ledger.issuedJobOfKey("k1"), undefined, "settled: no longer an issued job");
  assert.equal(ledger.jobOfKey("k1"), 1, "settled: still a job of the list");
  assert.deepEqual(asked, [0, 1, 2], "and the index is not made again");
});

Deno.test("Ledger.jobOfKey: without the list's keys, only keys of issued jobs are known", () => {
  const ledger = new Ledger(2, "run-a");
  ledger.issue(0, { attempt: 1, runner: "r1", run: "run-a" }, "k0");
  assert.equal(ledger.jobOfKey("k0"), 0);
  assert.equal(ledger.jobOfKey("k1"), undefined);
});
