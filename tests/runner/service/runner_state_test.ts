import assert from "node:assert/strict";
import { join } from "node:path";
import { RunnerState, RunnerStateError } from "../../../runner/service/runner_state.ts";
import { canMountTinyDisk, fill, tinyDisk } from "../../helpers/tiny_disk.ts";

const text = (s: string) => {
  const bytes = new TextEncoder().encode(s);
  return { size: bytes.length, pipeTo: (sink: (c: Uint8Array) => Promise<void>) => sink(bytes) };
};

Deno.test("RunnerState.setAside: moves a kept result out of pending/ with its reason; names are never reused", async () => {
  const dir = await Deno.makeTempDir();
  try {
    using state = await RunnerState.open(dir);
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
    state.close();
    using again = await RunnerState.open(dir);
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
    let state = await RunnerState.open(dir);
    await state.store({ command: "echo one" }, 0, text("one\n"));
    let [one] = await state.pending();
    assert.equal(one.failures, 0);
    assert.equal(await state.noteFailedDelivery(one), 1);
    state.close();
    state = await RunnerState.open(dir);
    [one] = await state.pending();
    assert.equal(await state.noteFailedDelivery(one), 2);
    [one] = await state.pending();
    assert.equal(one.failures, 2);
    state.close();
    await one.dispose();
    assert.deepEqual([...Deno.readDirSync(join(dir, "pending"))], []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("RunnerState.open: a second holder of the same directory is refused, naming the first, until the first closes", async () => {
  // Two runners on one directory shared an id and numbered kept results from
  // the same count: the second's result replaced the first's, and the first's
  // handle then delivered the other job's output as its own.
  const dir = await Deno.makeTempDir();
  try {
    const first = await RunnerState.open(dir);
    await first.store({ command: "job-a", tag: "run=r key=a attempt=1" }, 0, text("output of a"));
    await assert.rejects(
      () => RunnerState.open(dir),
      (err: unknown) => {
        assert.ok(err instanceof RunnerStateError, String(err));
        assert.equal(err.code, "REFUSED");
        assert.equal(err.problem, "in-use");
        assert.equal(err.holder?.pid, Deno.pid);
        assert.match(err.message, new RegExp(`State directory .* is in use by another runner: pid ${Deno.pid} on `));
        assert.match(err.message, /--state-dir of its own/);
        return true;
      },
    );
    const [kept] = await first.pending();
    let out = "";
    await kept.pipeTo((c) => Promise.resolve(void (out += new TextDecoder().decode(c))));
    assert.deepEqual([kept.command, out], ["job-a", "output of a"], "the first holder's result is untouched");
    first.close();
    using second = await RunnerState.open(dir);
    assert.equal(second.id, first.id);
    await second.store({ command: "job-b" }, 0, text("output of b"));
    assert.deepEqual((await second.pending()).map((r) => r.command), ["job-a", "job-b"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("RunnerState.open: a state directory others may write or read is refused with the chmod that fixes it", async () => {
  // Anyone who can write there can plant a kept result (pending/N.json and
  // .out) that the runner then delivers to its manager as a job's.
  const dir = await Deno.makeTempDir();
  try {
    for (const mode of [0o777, 0o733, 0o750]) {
      await Deno.chmod(dir, mode);
      await assert.rejects(
        () => RunnerState.open(dir),
        (err: unknown) => {
          assert.ok(err instanceof RunnerStateError, String(err));
          assert.equal(err.code, "UNSAFE");
          assert.equal(err.problem, "unsafe");
          assert.match(err.message, new RegExp(`open to other users \\(mode ${mode.toString(8)}\\).*chmod 700 `));
          return true;
        },
      );
      assert.deepEqual([...Deno.readDirSync(dir)], [], "nothing was made in it");
    }
    await Deno.chmod(dir, 0o700);
    if (Deno.uid() === 0) {
      // Root's runner on a directory another user owns: that user can plant files in it too.
      await Deno.chown(dir, 65534, 65534);
      await assert.rejects(() => RunnerState.open(dir), /owned by uid 65534, not by this runner's uid 0/);
      await Deno.chown(dir, 0, 0);
    }
    using state = await RunnerState.open(dir);
    assert.ok(state.id.length > 0);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("RunnerState.pending: a result being stored meanwhile is left alone (its .out.tmp is not swept)", async () => {
  const dir = await Deno.makeTempDir();
  try {
    using state = await RunnerState.open(dir);
    const bytes = new TextEncoder().encode("slow\n");
    // The connection loop lists what is kept while a worker is still writing its result.
    const output = {
      size: bytes.length,
      pipeTo: async (sink: (c: Uint8Array) => Promise<void>) => {
        await sink(bytes.subarray(0, 2));
        assert.deepEqual(await state.pending(), [], "not kept yet");
        await sink(bytes.subarray(2));
      },
    };
    const kept = await state.store({ command: "echo slow" }, 0, output);
    assert.equal(kept.size, 5);
    assert.deepEqual((await state.pending()).map((r) => r.command), ["echo slow"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("RunnerState.open: finishes or sweeps what a SIGKILL between two steps of store, dispose or setAside left", async () => {
  const dir = await Deno.makeTempDir();
  try {
    {
      using state = await RunnerState.open(dir);
      for (const n of ["one", "two", "three", "four"]) await state.store({ command: `echo ${n}` }, 0, text(`${n}\n`));
    }
    const pending = join(dir, "pending");
    const aside = join(dir, "set-aside");
    // Killed in store: after the .out.tmp was made, and after its rename but before the .json.
    await Deno.writeTextFile(join(pending, "00000005.out.tmp"), "half");
    await Deno.writeTextFile(join(pending, "00000006.out"), "no json\n");
    // Killed in dispose, after the .json was removed.
    await Deno.remove(join(pending, "00000001.json"));
    await Deno.writeTextFile(join(pending, "00000001.failures"), "2\n");
    // Killed in setAside: after its .reason (three), and after moving its .out (four).
    await Deno.writeTextFile(join(aside, "00000003.reason"), "not wanted\n");
    await Deno.writeTextFile(join(aside, "00000004.reason"), "not wanted\n");
    await Deno.rename(join(pending, "00000004.out"), join(aside, "00000004.out"));
    using state = await RunnerState.open(dir);
    assert.deepEqual((await state.pending()).map((r) => r.command), ["echo two"]);
    assert.deepEqual([...Deno.readDirSync(pending)].map((e) => e.name).sort(), ["00000002.json", "00000002.out"]);
    assert.deepEqual([...Deno.readDirSync(aside)].map((e) => e.name).sort(), [
      "00000003.json",
      "00000003.out",
      "00000003.reason",
      "00000004.json",
      "00000004.out",
      "00000004.reason",
    ]);
    // Names stay unique past what was swept.
    await state.store({ command: "echo seven" }, 0, text("seven\n"));
    assert.deepEqual((await state.pending()).map((r) => r.name), ["00000002", "00000007"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

const mountable = canMountTinyDisk();

Deno.test({
  name:
    "RunnerState.store on a full disk rejects with ENOSPC and leaves no file behind; setAside leaves the result kept, with no .reason",
  ignore: !mountable,
  async fn() {
    using disk = tinyDisk()!;
    const dir = join(disk.path, "state");
    using state = await RunnerState.open(dir);
    await state.store({ command: "echo kept" }, 0, text("kept\n"));
    const [kept] = await state.pending();
    fill(join(disk.path, "filler"));
    const big = text("x".repeat(200_000));
    await assert.rejects(
      () => state.store({ command: "echo big" }, 0, big),
      (err: unknown) => err instanceof Error && (err as { code?: string }).code === "ENOSPC",
    );
    // Before, its half-written .out.tmp stayed in pending/ (and filled the disk) until the next start.
    assert.deepEqual([...Deno.readDirSync(join(dir, "pending"))].map((e) => e.name).sort(), [
      `${kept.name}.json`,
      `${kept.name}.out`,
    ]);
    await assert.rejects(
      () => state.setAside(kept, "not wanted"),
      (err: unknown) => err instanceof Error && (err as { code?: string }).code === "ENOSPC",
    );
    // Before, an empty .reason stayed, and the next start took it for a setting-aside begun and finished it.
    assert.deepEqual([...Deno.readDirSync(join(dir, "set-aside"))], []);
    assert.deepEqual((await state.pending()).map((r) => r.command), ["echo kept"], "still kept, whole");
    Deno.removeSync(join(disk.path, "filler"));
    state.close();
    using again = await RunnerState.open(dir);
    assert.deepEqual((await again.pending()).map((r) => r.command), ["echo kept"]);
  },
});

Deno.test("RunnerState.pending: a kept result whose output was truncated or changed, or whose .json is garbled, is set aside as damaged, never offered", async () => {
  // Before, a truncated .out was offered (and delivered) with its new, short
  // size as the job's whole output, a changed one with its wrong bytes, and a
  // garbled .json was skipped without a word at every connection.
  const dir = await Deno.makeTempDir();
  try {
    {
      using state = await RunnerState.open(dir);
      for (const n of ["whole", "short", "changed", "garbled", "wrong", "lost"]) {
        await state.store({ command: `echo ${n}`, tag: `run=r key=${n} attempt=1` }, 0, text(`${n} output\n`));
      }
    }
    const pending = join(dir, "pending");
    const name = (i: number) => String(i).padStart(8, "0");
    await Deno.truncate(join(pending, `${name(2)}.out`), 3);
    await Deno.writeTextFile(join(pending, `${name(3)}.out`), "CHANGED output\n".slice(0, "changed output\n".length));
    await Deno.writeTextFile(join(pending, `${name(4)}.json`), '{"command": "echo garb');
    await Deno.writeTextFile(join(pending, `${name(5)}.json`), JSON.stringify({ command: "echo wrong", status: "0" }));
    await Deno.remove(join(pending, `${name(6)}.out`));
    using state = await RunnerState.open(dir);
    const kept = await state.pending();
    assert.deepEqual(kept.map((r) => r.command), ["echo whole"], "only the whole one is offered");
    let out = "";
    await kept[0].pipeTo((c) => Promise.resolve(void (out += new TextDecoder().decode(c))));
    assert.equal(out, "whole output\n");
    const aside = join(dir, "set-aside");
    const reason = (i: number) => Deno.readTextFileSync(join(aside, `${name(i)}.reason`));
    assert.match(reason(2), /damaged: its output is 3 bytes, its record says 13/);
    assert.match(reason(3), /damaged: its output's SHA-256 is not the one its record gives/);
    assert.match(reason(4), /damaged: its record is not JSON/);
    assert.match(reason(5), /damaged: its record has no valid status/);
    assert.match(reason(6), /damaged: its output file is missing/);
    assert.equal(Deno.readTextFileSync(join(aside, `${name(2)}.out`)), "sho", "its bytes stay for a person to look at");
    assert.deepEqual([...Deno.readDirSync(pending)].map((e) => e.name).sort(), [`${name(1)}.json`, `${name(1)}.out`]);
    // Once set aside, nothing more is said of them.
    assert.deepEqual((await state.pending()).map((r) => r.command), ["echo whole"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("RunnerState.pending: a kept result of an older runner (no size or SHA-256 in its .json) is still offered whole", async () => {
  const dir = await Deno.makeTempDir();
  try {
    using state = await RunnerState.open(dir);
    const base = join(dir, "pending", "00000001");
    await Deno.writeTextFile(base + ".out", "old\n");
    await Deno.writeTextFile(
      base + ".json",
      JSON.stringify({ command: "echo old", status: 3, tag: "run=r key=o attempt=1" }),
    );
    const [old] = await state.pending();
    assert.deepEqual([old.command, old.status, old.size, old.tag], ["echo old", 3, 4, "run=r key=o attempt=1"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
