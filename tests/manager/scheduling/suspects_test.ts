import assert from "node:assert/strict";
import { Suspects } from "../../../manager/scheduling/suspects.ts";

Deno.test({
  name: "Suspects.hold() holds a job back until release()",
  permissions: "none",
  fn() {
    const s = new Suspects();
    s.hold(3);
    assert.equal(s.isHeld(3), true);
    assert.equal(s.release(3), true);
    assert.equal(s.release(3), false, "released once");
    assert.equal(s.isHeld(3), false);
  },
});

Deno.test({
  name: "Suspects.bar() bars a host until its time, or until unbar()",
  permissions: "none",
  fn() {
    const s = new Suspects();
    s.bar("h", 1000);
    assert.deepEqual([s.isBarred("h", 999), s.isBarred("h", 1000), s.isBarred("other", 0)], [true, false, false]);
    s.unbar("h");
    assert.equal(s.isBarred("h", 0), false);
  },
});

Deno.test({
  name: "Suspects with a lift callback ends each quarantine on its own clock; close() stops them",
  permissions: "none",
  async fn() {
    const lifted: string[] = [];
    let now = 0;
    const s = new Suspects((host) => lifted.push(host), () => now);
    s.bar("soon", 10);
    s.bar("late", 60_000);
    await new Promise((r) => setTimeout(r, 50));
    now = 50;
    assert.deepEqual(lifted, ["soon"]);
    s.close();
  },
});
