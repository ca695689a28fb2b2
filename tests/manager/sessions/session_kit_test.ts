import assert from "node:assert/strict";
import { ProtocolError, VicoError } from "../../../core/errors.ts";
import { SessionKit } from "../../../manager/sessions/session_kit.ts";
import type { CarriedJob, RunnerLink } from "../../../manager/scheduling/scheduler.ts";
import { FakeClock } from "../../helpers/fake_clock.ts";

const held: CarriedJob[] = [];

/** A kit over recording parts: what it does, in order. */
function kit() {
  const events: string[] = [];
  const link = {} as RunnerLink;
  const clock = new FakeClock();
  const kit = new SessionKit<number>(
    link,
    { close: () => events.push("close") },
    {
      onRunnerJoined: (l, h) => void events.push(`joined ${l === link && h === held}`),
      onRunnerLost: (l, blame) => void events.push(`lost ${l === link} blame=${blame}`),
    },
    { deadline: 0, done: () => events.push("handshake done") },
    held,
    clock,
  );
  const report = (err: unknown) => Promise.resolve(void events.push(`report ${(err as Error).message}`));
  const ended = () => void events.push("Closed");
  return { kit, events, report, ended, clock };
}

Deno.test("SessionKit.join closes the handshake window and tells the scheduler of the peer and what it holds", () => {
  const { kit: k, events } = kit();
  assert.equal(k.joined, false);
  k.join();
  assert.equal(k.joined, true);
  assert.deepEqual(events, ["handshake done", "joined true"]);
});

Deno.test("SessionKit.run ends a clean session: watch stopped, Closed, jobs back to the scheduler, connection closed", async () => {
  const { kit: k, events, report, ended, clock } = kit();
  k.liveness.watch(100, () => events.push("check"));
  await k.run(() => Promise.resolve(k.join()), report, ended);
  assert.deepEqual(events, ["handshake done", "joined true", "Closed", "lost true blame=true", "close"]);
  assert.equal(clock.running, 0, "the liveness watch ends with the session");
});

Deno.test("SessionKit.run reports a failure and never rejects; a protocol error does not blame the jobs", async () => {
  const broke = kit();
  await broke.kit.run(
    () => {
      broke.kit.join();
      return Promise.reject(new ProtocolError("bad line"));
    },
    broke.report,
    broke.ended,
  );
  assert.deepEqual(broke.events.slice(2), ["report bad line", "Closed", "lost true blame=false", "close"]);
  const lost = kit();
  await lost.kit.run(
    () => {
      lost.kit.join();
      return Promise.reject(new VicoError("CONNECTION_CLOSED", "gone"));
    },
    lost.report,
    lost.ended,
  );
  assert.deepEqual(lost.events.slice(2), ["report gone", "Closed", "lost true blame=true", "close"]);
});

Deno.test("SessionKit.run tells the scheduler nothing of a peer that never joined", async () => {
  const { kit: k, events, report, ended } = kit();
  await k.run(() => Promise.reject(new ProtocolError("no hail")), report, ended);
  assert.deepEqual(events, ["report no hail", "Closed", "close"]);
});

Deno.test("SessionKit.liveness drops the peer through the session's connection", () => {
  const { kit: k, events, clock } = kit();
  clock.advance(10_000);
  assert.equal(k.liveness.dropIfSilent(1000, "Runner", "no pulse"), true);
  assert.deepEqual(events, ["close"]);
});
