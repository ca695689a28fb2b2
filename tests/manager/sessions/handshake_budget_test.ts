import assert from "node:assert/strict";
import { HandshakeBudget } from "../../../manager/sessions/handshake_budget.ts";

Deno.test({
  name: "HandshakeBudget.charge closes the biggest holder first, whatever the split, and stays under its limit",
  permissions: "none",
  fn() {
    const budget = new HandshakeBudget<string>(1000);
    assert.deepEqual(budget.charge("honest-1", 100), []);
    assert.deepEqual(budget.charge("greedy", 700), []);
    assert.deepEqual(budget.charge("honest-2", 150), []);
    // An honest runner's next line tips it over: the greedy one goes.
    assert.deepEqual(budget.charge("honest-1", 100), [{ key: "greedy", bytes: 700 }]);
    assert.equal(budget.used, 350);
    // Many small holders: the biggest of them goes, until under the limit.
    const closed = [];
    for (let i = 0; i < 30; i++) closed.push(...budget.charge(`small-${i}`, 30));
    assert.deepEqual(closed, [{ key: "honest-1", bytes: 200 }, { key: "honest-2", bytes: 150 }]);
    assert.equal(budget.used, 900);
    // One connection alone over the limit is closed by its own read.
    const alone = new HandshakeBudget<string>(1000);
    assert.deepEqual(alone.charge("huge", 1001), [{ key: "huge", bytes: 1001 }]);
    assert.equal(alone.used, 0);
  },
});

Deno.test({
  name: "HandshakeBudget.release gives back a completed handshake's share",
  permissions: "none",
  fn() {
    const budget = new HandshakeBudget<string>(100);
    budget.charge("a", 60);
    budget.release("a");
    budget.release("a");
    assert.equal(budget.used, 0);
    assert.deepEqual(budget.charge("b", 100), []);
  },
});
