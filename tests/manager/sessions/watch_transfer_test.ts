import assert from "node:assert/strict";
import { VicoError } from "../../../core/errors.ts";
import { Liveness } from "../../../manager/sessions/liveness.ts";
import { watchTransfer } from "../../../manager/sessions/watch_transfer.ts";
import { BufferedReader } from "../../../protocol/buffered_reader.ts";
import { memoryTransportPair } from "../../../transport/memory_transport.ts";
import { FakeClock } from "../../helpers/fake_clock.ts";

const stalled = (ms: number) => `nothing moved for ${ms}ms`;

/** Lets the memory transport's reads and the session's awaits run. */
const settle = () => new Promise((r) => setTimeout(r, 0));

Deno.test("watchTransfer drops a peer whose transfer moves nothing for the timeout, with the stall's reason", async () => {
  const clock = new FakeClock();
  const [manager, peer] = memoryTransportPair();
  const liveness = new Liveness(manager, clock);
  const reader = new BufferedReader(manager);
  const got: number[] = [];
  const transfer = watchTransfer(liveness, 1000, stalled, (moved) =>
    reader.pipeExact(10, (chunk) => {
      moved();
      got.push(chunk.length);
    }));
  assert.equal(liveness.transferring, true);
  await peer.write(new Uint8Array(4));
  await settle();
  clock.advance(999);
  assert.equal(liveness.dropReason, undefined, "less than the timeout since the last chunk");
  clock.advance(250);
  await assert.rejects(
    transfer,
    (e) => e instanceof VicoError && e.code === "CONNECTION_CLOSED" && e.message === "nothing moved for 1000ms",
  );
  assert.deepEqual(got, [4]);
  assert.equal(liveness.dropReason, "nothing moved for 1000ms");
  assert.equal(liveness.transferring, false);
  assert.equal(clock.running, 0, "the watchdog stops with the transfer");
});

Deno.test("watchTransfer lets a slow transfer that keeps moving run past the timeout", async () => {
  const clock = new FakeClock();
  const [manager, peer] = memoryTransportPair();
  const liveness = new Liveness(manager, clock);
  const reader = new BufferedReader(manager);
  const transfer = watchTransfer(liveness, 1000, stalled, (moved) => reader.pipeExact(5, () => moved()));
  for (let i = 0; i < 5; i++) {
    clock.advance(800);
    await peer.write(new Uint8Array(1));
    await settle();
  }
  await transfer;
  assert.equal(liveness.dropReason, undefined);
  assert.equal(liveness.transferring, false);
});

Deno.test("watchTransfer passes on what the transfer threw when it did not stall", async () => {
  const liveness = new Liveness({ close() {} }, new FakeClock());
  await assert.rejects(
    watchTransfer(liveness, 1000, stalled, () => Promise.reject(new RangeError("disk full"))),
    RangeError,
  );
  assert.equal(liveness.transferring, false);
});
