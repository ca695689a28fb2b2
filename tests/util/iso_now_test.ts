import assert from "node:assert/strict";
import { isoNow } from "../../util/iso_now.ts";

Deno.test("isoNow is the current time as ISO-8601 UTC, to the millisecond", () => {
  const before = Date.now();
  const iso = isoNow();
  const after = Date.now();
  assert.match(iso, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  const ms = Date.parse(iso);
  assert.ok(ms >= before && ms <= after, `${iso} not within [${before}, ${after}]`);
  assert.equal(new Date(ms).toISOString(), iso);
});

Deno.test("isoNow moves on with the clock", async () => {
  const first = isoNow();
  await new Promise((r) => setTimeout(r, 5));
  assert.ok(Date.parse(isoNow()) > Date.parse(first));
});
