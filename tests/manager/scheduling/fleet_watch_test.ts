import assert from "node:assert/strict";
import { describeClass, FleetWatch } from "../../../manager/scheduling/fleet_watch.ts";
import { type JobClass, PLAIN_CLASS } from "../../../manager/jobs/job_list.ts";
import { JobQueue } from "../../../manager/jobs/job_queue.ts";
import { type RunnerLink, Scheduler } from "../../../manager/scheduling/scheduler.ts";

const MATLAB: JobClass = { modules: ["matlab"], binaryOnly: true, nodes: 1 };

function link(host: string, modules: string[] | "text"): RunnerLink {
  return {
    host,
    peer: "p",
    accepts: (c) => modules === "text" ? !c.binaryOnly : c.modules.every((m) => modules.includes(m)),
    assign() {},
    release() {},
    refuse() {},
  };
}

Deno.test({
  name: "FleetWatch warns once when jobs wait with no runner, and when no runner seen lately fits a class",
  permissions: "none",
  fn() {
    const classes = [PLAIN_CLASS, MATLAB];
    const queue = new JobQueue(3, { classOf: Uint16Array.of(0, 1, 1), classes: 2 });
    const scheduler = new Scheduler(queue, classes);
    const watch = new FleetWatch(classes, queue, scheduler, 60_000);
    assert.deepEqual(watch.check(0), []);
    assert.deepEqual(watch.check(11_000), ["3 job(s) are waiting and no runner is connected"]);
    assert.deepEqual(watch.check(20_000), [], "said once");
    const text = link("t", "text");
    scheduler.onRunnerJoined(text);
    watch.onJoined(text, 21_000);
    assert.deepEqual(watch.check(22_000), [
      "No runner seen in the last 60s can take these: 2 job(s) need binary nodes with modules matlab",
    ]);
    assert.deepEqual(watch.check(23_000), [], "said once while nothing changes");
    const node = link("n", ["matlab"]);
    watch.onJoined(node, 24_000);
    assert.deepEqual(watch.check(25_000), []);
    assert.equal(describeClass({ modules: [], binaryOnly: true, nodes: 3 }), "binary nodes in gangs of 3");
  },
});

Deno.test({
  name: "FleetWatch.start() checks on a clock of its own until stop()",
  permissions: "none",
  async fn() {
    const queue = new JobQueue(1);
    const watch = new FleetWatch([PLAIN_CLASS], queue, new Scheduler(queue, [PLAIN_CLASS]), 60_000);
    let checks = 0;
    const check = watch.check.bind(watch);
    watch.check = (now?: number) => (checks++, check(now));
    watch.start(5);
    watch.start(5); // a second start keeps the one clock
    await new Promise((r) => setTimeout(r, 40));
    watch.stop();
    const seen = checks;
    assert.ok(seen >= 1, "it checked");
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(checks, seen, "no check after stop()");
  },
});
