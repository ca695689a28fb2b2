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
