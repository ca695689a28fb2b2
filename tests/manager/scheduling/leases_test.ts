import assert from "node:assert/strict";
import { Leases } from "../../../manager/scheduling/leases.ts";

Deno.test({
  name: "Leases.grant() leases jobs to a runner; take() and drop() end them",
  permissions: "none",
  fn() {
    const leases = new Leases();
    leases.grant("r1", [1, 2]);
    leases.grant("r1", [3]);
    leases.grant("r2", [4]);
    assert.deepEqual([leases.size, leases.runnerOf(3), leases.runnerOf(4)], [4, "r1", "r2"]);
    leases.drop(2);
    assert.deepEqual([leases.size, leases.runnerOf(2)], [3, undefined]);
    assert.deepEqual([...leases.take("r1")], [1, 3]);
    assert.deepEqual([leases.has("r1"), leases.size, leases.runnerOf(1)], [false, 1, undefined]);
    assert.deepEqual([...leases.take("nobody")], []);
    leases.grant("r3", []);
    assert.equal(leases.has("r3"), true, "a lease of no jobs is still a lease");
    assert.deepEqual([...leases.entries()].map(([id, jobs]) => [id, [...jobs]]), [["r2", [4]], ["r3", []]]);
  },
});

Deno.test({
  name: "Leases.arm() runs a lease's clock, started again by a second arm, and close() stops every clock",
  permissions: "none",
  async fn() {
    const expired: string[] = [];
    const leases = new Leases((id) => expired.push(id));
    leases.arm("r1", 60_000);
    leases.arm("r1", 10);
    leases.arm("r2", 60_000);
    await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(expired, ["r1"], "only the second clock of r1 ran");
    leases.close();
    new Leases().arm("r1", 60_000); // no callback: no clock
  },
});
