import assert from "node:assert/strict";
import { HaltWatch, parseHalt } from "../../cli/halt_policy.ts";
import { VicoError } from "../../core/errors.ts";

/**
 * What `parallel -j1 -k --halt HALT 'echo {}; exit {}' ::: STATUSES` did (20221122):
 * how many jobs ran and its exit status.
 */
const RECORDED = [
  { halt: "now,fail=1", statuses: [0, 3, 4], ran: 2, rc: 3 },
  { halt: "soon,fail=1", statuses: [0, 3, 4], ran: 2, rc: 3 },
  { halt: "soon,fail=2", statuses: [0, 3, 0, 4, 5], ran: 4, rc: 2 },
  { halt: "now,fail=2", statuses: [1, 0, 0], ran: 3, rc: 1 },
  { halt: "soon,fail=50%", statuses: [0, 3, 0, 0, 5, 6], ran: 6, rc: 50 },
  { halt: "soon,fail=30%", statuses: [0, 3, 0, 0, 5, 6, 0, 0, 0, 0], ran: 6, rc: 30 },
  { halt: "now,success=1", statuses: [3, 0, 4], ran: 2, rc: 0 },
  { halt: "soon,success=2", statuses: [3, 0, 4, 0, 5], ran: 4, rc: 0 },
  { halt: "now,done=2", statuses: [3, 0, 4], ran: 2, rc: 1 },
  { halt: "soon,done=50%", statuses: [3, 0, 4, 0], ran: 2, rc: 25 },
  { halt: "1", statuses: [0, 7, 0], ran: 2, rc: 7 },
  { halt: "2", statuses: [0, 7, 0], ran: 2, rc: 7 },
  { halt: "-1", statuses: [5, 0, 7], ran: 2, rc: 0 },
  { halt: "20%", statuses: [0, 1, 0, 0, 2], ran: 2, rc: 1 },
  { halt: "never", statuses: [0, 1, 2], ran: 3, rc: 2 },
  { halt: "now,fail=1", statuses: [0, 0, 0], ran: 3, rc: 0 },
  { halt: "now,fail=1", statuses: [0, 137, 0], ran: 2, rc: 137 },
];

/** Runs the statuses one at a time as `-j1` does: how many ran and the exit status. */
function simulate(halt: string, statuses: readonly number[]) {
  const watch = new HaltWatch(parseHalt(halt), statuses.length);
  let ran = 0;
  for (const status of statuses) {
    ran++;
    if (watch.ended({ status })) break;
  }
  return { ran, rc: watch.exitStatus(ran) };
}

Deno.test("HaltWatch: halts where Parallel halts, with Parallel's exit status", () => {
  for (const c of RECORDED) {
    assert.deepEqual(simulate(c.halt, c.statuses), { ran: c.ran, rc: c.rc }, `--halt ${c.halt} ${c.statuses}`);
  }
});

Deno.test("HaltWatch: matches the installed parallel", async () => {
  const which = await new Deno.Command("sh", { args: ["-c", "command -v parallel"], stdout: "null" }).output();
  if (!which.success) return;
  for (const c of RECORDED) {
    const p = await new Deno.Command("parallel", {
      args: ["--will-cite", "-j1", "-k", "--halt", c.halt, "echo {}; exit {}", ":::", ...c.statuses.map(String)],
      env: { PARALLEL_SHELL: "/bin/sh" },
      stdin: "null",
      stderr: "null",
    }).output();
    const ran = new TextDecoder().decode(p.stdout).split("\n").length - 1;
    assert.deepEqual(simulate(c.halt, c.statuses), { ran, rc: p.code }, `--halt ${c.halt} ${c.statuses}`);
  }
});

Deno.test("HaltWatch: decides once, says why, and a signal is a failure", () => {
  const watch = new HaltWatch(parseHalt("now,fail=2"), 10);
  assert.equal(watch.ended({ status: 0, signal: 9 }), undefined);
  const decision = watch.ended({ status: 1 });
  assert.deepEqual(decision, { action: "now", exitStatus: 2, reason: "2 jobs failed (--halt now,fail=2)" });
  assert.equal(watch.ended({ status: 1 }), undefined);
  assert.deepEqual(watch.decision, decision);
  assert.equal(watch.failed, 3);
  const pct = new HaltWatch(parseHalt("soon,fail=10%"), 20);
  pct.ended({ status: 1 });
  assert.equal(pct.ended({ status: 2 })?.reason, "2 jobs failed of 20 (--halt soon,fail=10%)");
  const signalled = new HaltWatch(parseHalt("now,fail=1"), 2);
  assert.equal(signalled.ended({ status: 0, signal: 15 })?.exitStatus, 143);
});

Deno.test("parseHalt: every form Parallel accepts", () => {
  assert.deepEqual(parseHalt("never"), { when: "never" });
  assert.deepEqual(parseHalt("0"), { when: "never" });
  assert.deepEqual(parseHalt("now,fail=1"), { when: "now", why: "fail", threshold: 1, percent: false });
  assert.deepEqual(parseHalt("soon,success=3%"), { when: "soon", why: "success", threshold: 3, percent: true });
  assert.deepEqual(parseHalt("now,done=7"), { when: "now", why: "done", threshold: 7, percent: false });
  assert.deepEqual(parseHalt("-2"), { when: "now", why: "success", threshold: 1, percent: false });
  assert.deepEqual(parseHalt("5%"), { when: "soon", why: "fail", threshold: 5, percent: true });
});

Deno.test("parseHalt: a bad value is a usage error naming the flag and the form", () => {
  for (
    const bad of ["", "now", "later,fail=1", "now,fail", "now,fail=0", "now,fail=101%", "soon,fail=-1", "now,oops=1"]
  ) {
    assert.throws(
      () => parseHalt(bad),
      (e) => e instanceof VicoError && e.code === "USAGE" && e.message.startsWith("--halt needs never, or soon|now"),
      bad,
    );
  }
});
