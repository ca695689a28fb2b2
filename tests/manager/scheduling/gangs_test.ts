import assert from "node:assert/strict";
import { Gangs } from "../../../manager/scheduling/gangs.ts";
import type { RunnerLink } from "../../../manager/scheduling/scheduler.ts";

function link(host: string): RunnerLink {
  return { host, peer: `${host}:1`, accepts: () => true, assign() {}, release() {}, refuse() {} };
}

Deno.test({
  name: "Gangs.join() ranks members from 1 and a full gang stops gathering",
  permissions: "none",
  fn() {
    const gangs = new Gangs();
    const [a, b, c] = [link("a"), link("b"), link("c")];
    const first = gangs.open(1, 2, 0);
    const second = gangs.open(2, 2, 0);
    assert.deepEqual(gangs.gathering(), [first, second], "oldest first");
    assert.equal(gangs.join(first, a), 1);
    assert.equal(gangs.join(first, b), 2);
    assert.equal(gangs.isGathering(first), false);
    assert.deepEqual(gangs.gathering(), [second]);
    assert.equal(gangs.join(second, c), 1);
    assert.deepEqual(gangs.membersOf(1), [a, b]);
    assert.equal(gangs.membersOf(3), undefined);
  },
});

Deno.test({
  name: "Gangs.ready() gives the members once every one is ready, and close() forgets the gang",
  permissions: "none",
  fn() {
    const gangs = new Gangs();
    const [a, b] = [link("a"), link("b")];
    const gang = gangs.open(5, 2, 0);
    gangs.join(gang, a);
    gangs.join(gang, b);
    assert.equal(gangs.ready(5, a), undefined);
    assert.equal(gangs.ready(5, a), undefined, "the same member twice is still one");
    assert.deepEqual(gangs.ready(5, b), [a, b]);
    assert.equal(gangs.close(5), gang);
    assert.equal(gangs.has(5), false);
    assert.equal(gangs.close(5), undefined);
    const gathering = gangs.open(6, 3, 0);
    gangs.close(6);
    assert.equal(gangs.isGathering(gathering), false, "a closed gang no longer gathers");
  },
});
