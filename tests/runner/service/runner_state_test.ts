import assert from "node:assert/strict";
import { join } from "node:path";
import { RunnerState } from "../../../runner/service/runner_state.ts";

const text = (s: string) => {
  const bytes = new TextEncoder().encode(s);
  return { size: bytes.length, pipeTo: (sink: (c: Uint8Array) => Promise<void>) => sink(bytes) };
};

Deno.test("RunnerState.setAside: moves a kept result out of pending/ with its reason; names are never reused", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const state = await RunnerState.open(dir);
    await state.store({ command: "echo one" }, 0, text("one\n"));
    await state.store({ command: "echo two" }, 0, text("two\n"));
    const [one] = await state.pending();
    const where = await state.setAside(one, "not wanted");
    assert.equal(where, join(dir, "set-aside", `${one.name}.out`));
    assert.equal(await Deno.readTextFile(where), "one\n");
    assert.equal(await Deno.readTextFile(join(dir, "set-aside", `${one.name}.reason`)), "not wanted\n");
    assert.deepEqual((await state.pending()).map((r) => r.command), ["echo two"], "the other result is untouched");
    // A state opened again numbers new results past those set aside.
    const [two] = await state.pending();
    await state.setAside(two, "not wanted either");
    const again = await RunnerState.open(dir);
    await again.store({ command: "echo three" }, 0, text("three\n"));
    const [three] = await again.pending();
    assert.ok(three.name > two.name, `${three.name} after ${two.name}`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("RunnerState.noteFailedDelivery: the count of failed deliveries in a row survives reopening; dispose clears it", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const state = await RunnerState.open(dir);
    await state.store({ command: "echo one" }, 0, text("one\n"));
    let [one] = await state.pending();
    assert.equal(one.failures, 0);
    assert.equal(await state.noteFailedDelivery(one), 1);
    [one] = await (await RunnerState.open(dir)).pending();
    assert.equal(await state.noteFailedDelivery(one), 2);
    [one] = await state.pending();
    assert.equal(one.failures, 2);
    await one.dispose();
    assert.deepEqual([...Deno.readDirSync(join(dir, "pending"))], []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
