import assert from "node:assert/strict";
import { SYSTEM_CLOCK } from "../../../manager/sessions/session_clock.ts";

Deno.test("SYSTEM_CLOCK ticks on the real clock until cancelled", async () => {
  const t0 = SYSTEM_CLOCK.now();
  let ticks = 0;
  const stop = SYSTEM_CLOCK.every(5, () => ticks++);
  while (ticks < 2) await new Promise((r) => setTimeout(r, 5));
  stop();
  const seen = ticks;
  await new Promise((r) => setTimeout(r, 30));
  assert.equal(ticks, seen);
  assert.ok(SYSTEM_CLOCK.now() - t0 >= 10);
});
