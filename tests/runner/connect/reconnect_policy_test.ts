/** The reconnect policy: every outcome's step in every situation, and the ends it names. */

import assert from "node:assert/strict";
import {
  type ConnectionOutcome,
  endOf,
  RECONNECT_POLICY,
  type ReconnectStep,
  stepAfter,
} from "../../../runner/connect/reconnect_policy.ts";

/** A step in a word: `backoff`, `now`, `idle` (`+reset`), or the end kind (`failed/finished`: finished after work). */
function word(step: ReconnectStep): string {
  if ("retry" in step) return step.retry + (step.reset ? "+reset" : "");
  return step.finish + (step.afterWork === undefined ? "" : `/${step.afterWork}`);
}

/**
 * What the runner did after each outcome before the policy was a table
 * (runner.ts's two loops): without --persist, without it while stopping,
 * with it, with it while stopping.
 */
const EXPECTED: Record<ConnectionOutcome, [string, string, string, string]> = {
  AUTH_FAILED: ["untrusted", "untrusted", "backoff", "backoff"],
  unreachable: ["failed/finished", "failed/finished", "backoff", "backoff"],
  openingStopped: ["stopped", "stopped", "stopped", "stopped"],
  handshakeTimeout: ["failed", "failed", "backoff", "backoff"],
  noExtension: ["now", "now", "now", "now"],
  helloRefused: ["refused", "refused", "backoff", "backoff"],
  closedSilently: ["failed/finished", "finished", "backoff", "backoff"],
  openingFailed: ["failed", "failed", "backoff", "backoff"],
  versionRefused: ["refused", "refused", "refused", "refused"],
  goodbye: ["finished", "finished", "idle", "finished"],
  stopped: ["stopped", "stopped", "stopped", "stopped"],
  lost: ["failed", "failed", "backoff", "backoff"],
  taskDone: ["now+reset", "now+reset", "now+reset", "now+reset"],
  detached: ["backoff", "backoff", "backoff", "backoff"],
  noMoreTasks: ["finished", "finished", "idle+reset", "finished"],
  rejected: ["refused", "refused", "backoff", "refused"],
  ownerGone: ["failed/finished", "finished", "backoff", "finished"],
  sessionFailed: ["failed", "stopped", "backoff", "stopped"],
};

Deno.test("RECONNECT_POLICY: every outcome has a rule, and only those", () => {
  assert.deepEqual(Object.keys(RECONNECT_POLICY).sort(), Object.keys(EXPECTED).sort());
  assert.ok(Object.isFrozen(RECONNECT_POLICY));
});

for (const outcome of Object.keys(EXPECTED) as ConnectionOutcome[]) {
  Deno.test(`stepAfter ${outcome}: the step without and with --persist, stopping or not`, () => {
    const got = [
      stepAfter(outcome, { persist: false, stopping: false }),
      stepAfter(outcome, { persist: false, stopping: true }),
      stepAfter(outcome, { persist: true, stopping: false }),
      stepAfter(outcome, { persist: true, stopping: true }),
    ].map(word);
    assert.deepEqual(got, EXPECTED[outcome]);
  });
}

Deno.test("endOf: each end kind carries what it says, and afterWork applies only once work was done", () => {
  const detail = { reason: "why", auth: true, jobs: 3 };
  assert.deepEqual(endOf({ finish: "finished" }, detail), { kind: "finished", jobs: 3 });
  assert.deepEqual(endOf({ finish: "stopped" }, detail), { kind: "stopped", jobs: 3 });
  assert.deepEqual(endOf({ finish: "failed" }, detail), { kind: "failed", reason: "why", jobs: 3 });
  assert.deepEqual(endOf({ finish: "refused" }, detail), { kind: "refused", reason: "why", auth: true });
  assert.deepEqual(endOf({ finish: "refused" }, { reason: "why", jobs: 0 }), {
    kind: "refused",
    reason: "why",
    auth: false,
  });
  assert.deepEqual(endOf({ finish: "untrusted" }, detail), { kind: "untrusted", reason: "why" });
  const closed = { finish: "failed", afterWork: "finished" } as const;
  assert.deepEqual(endOf(closed, { reason: "closed", jobs: 0 }), { kind: "failed", reason: "closed", jobs: 0 });
  assert.deepEqual(endOf(closed, { reason: "closed", jobs: 2 }), { kind: "finished", jobs: 2 });
});
