import assert from "node:assert/strict";
import { awakeInterval, LATE_TICK_SLACK_MS } from "../../util/awake_interval.ts";
import { FakeClock } from "../helpers/fake_clock.ts";

Deno.test("awakeInterval: ticks on time call tick; one that comes past two periods and the slack calls onLate instead", () => {
  const clock = new FakeClock();
  const calls: string[] = [];
  const stop = awakeInterval(100, () => calls.push("tick"), () => calls.push("late"), clock);
  clock.advance(300);
  assert.deepEqual(calls, ["tick", "tick", "tick"]);
  clock.pause(2 * 100 + LATE_TICK_SLACK_MS - 50); // late, but within the slack: a busy moment, not a pause
  assert.deepEqual(calls.at(-1), "tick");
  clock.pause(5000);
  assert.deepEqual(calls.at(-1), "late");
  clock.advance(100);
  assert.deepEqual(calls.at(-1), "tick", "then on time again");
  stop();
  assert.equal(clock.running, 0);
});
