import assert from "node:assert/strict";
import { VicoError } from "../../../core/errors.ts";
import { Liveness, SILENT_PULSES } from "../../../manager/sessions/liveness.ts";
import { MANAGER_SILENT_PULSES } from "../../../protocol/vico_extension.ts";
import { FakeClock } from "../../helpers/fake_clock.ts";

/** A connection that counts its closes. */
function connection() {
  return {
    closes: 0,
    close() {
      this.closes++;
    },
  };
}

Deno.test("SILENT_PULSES is the manager's pulse allowance from the vico extension", () => {
  assert.equal(SILENT_PULSES, MANAGER_SILENT_PULSES);
});

Deno.test("Liveness.silentMs counts from the last sign of life", () => {
  const clock = new FakeClock();
  const liveness = new Liveness(connection(), clock);
  clock.advance(700);
  assert.equal(liveness.silentMs, 700);
  liveness.heard();
  clock.advance(200);
  assert.equal(liveness.silentMs, 200);
});

Deno.test("Liveness.dropIfSilent drops a peer only past SILENT_PULSES pulses, and closes its connection", () => {
  const clock = new FakeClock();
  const conn = connection();
  const liveness = new Liveness(conn, clock);
  clock.advance(SILENT_PULSES * 1000);
  assert.equal(liveness.dropIfSilent(1000, "Runner", "no pulse"), false, "exactly the allowance is not yet lost");
  assert.equal(conn.closes, 0);
  clock.advance(1);
  assert.equal(liveness.dropIfSilent(1000, "Runner", "no pulse"), true);
  assert.equal(conn.closes, 1);
  assert.equal(liveness.dropReason, `Runner silent for ${SILENT_PULSES}s (no pulse)`);
});

Deno.test("Liveness.dropIfSilent never drops without pulses (pulse 0)", () => {
  const clock = new FakeClock();
  const liveness = new Liveness(connection(), clock);
  clock.advance(3_600_000);
  assert.equal(liveness.dropIfSilent(0, "Node", "no Status reply"), false);
  assert.equal(liveness.dropReason, undefined);
});

Deno.test("Liveness.drop keeps the first reason; closedError names it, or the fallback before any drop", () => {
  const liveness = new Liveness(connection(), new FakeClock());
  const before = liveness.closedError("Runner closed the connection");
  assert.ok(before instanceof VicoError && before.code === "CONNECTION_CLOSED");
  assert.equal(before.message, "Runner closed the connection");
  liveness.drop("first");
  liveness.drop("second");
  assert.equal(liveness.dropReason, "first");
  assert.equal(liveness.closedError("Runner closed the connection").message, "first");
});

Deno.test("Liveness.watch runs its check every interval until stop", () => {
  const clock = new FakeClock();
  const liveness = new Liveness(connection(), clock);
  let checks = 0;
  liveness.watch(100, () => checks++);
  clock.advance(350);
  assert.equal(checks, 3);
  liveness.stop();
  clock.advance(1000);
  assert.equal(checks, 3);
  assert.equal(clock.running, 0);
});

Deno.test("Liveness.watch: its own pause (a late tick) is no silence of the peer's: a whole window again, then judged", () => {
  const clock = new FakeClock();
  const conn = connection();
  const liveness = new Liveness(conn, clock);
  const pulseMs = 1000;
  liveness.watch(pulseMs, () => liveness.dropIfSilent(pulseMs, "Runner", "no pulse"));
  clock.advance(500);
  liveness.heard();
  // Stopped for 9 s (SIGSTOP, a suspended VM): the peer's pulses wait unread in the socket.
  clock.pause(9000);
  assert.equal(conn.closes, 0, "not dropped the moment it woke");
  assert.equal(liveness.dropReason, undefined);
  // Running again, the peer still silent: dropped once a whole window has gone by.
  clock.advance(SILENT_PULSES * pulseMs);
  assert.equal(conn.closes, 0, "exactly the allowance is not yet lost");
  clock.advance(pulseMs);
  assert.equal(conn.closes, 1);
  assert.match(liveness.dropReason ?? "", /^Runner silent for \ds \(no pulse\)$/);
  liveness.stop();
});

Deno.test("Liveness.watch: a peer silent while this side runs is dropped as before (ticks on time)", () => {
  const clock = new FakeClock();
  const conn = connection();
  const liveness = new Liveness(conn, clock);
  liveness.watch(1000, () => liveness.dropIfSilent(1000, "Runner", "no pulse"));
  clock.advance(3000);
  assert.equal(conn.closes, 0);
  clock.advance(1000);
  assert.equal(conn.closes, 1, "dropped at the first tick past the allowance");
  liveness.stop();
});
