/**
 * `runner --persist` when its state directory fails it: the disk fills, the
 * directory is removed under it. Each job ends recorded once, the runner
 * says why it could not keep a result, and nothing crashes or hangs.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { freePort, startManagerAgain, startManagerOn, startRunner } from "../helpers/entry_process.ts";
import { byLine, readOutput, readRecords, tempDir } from "../helpers/journal.ts";
import { canMountTinyDisk, fill, tinyDisk } from "../helpers/tiny_disk.ts";

const dec = new TextDecoder();
const mountable = canMountTinyDisk();

Deno.test({
  name:
    "runner --persist on a full state disk: a result it cannot keep while the manager is away is said to be lost, and the restarted manager runs the job again, recorded once",
  ignore: !mountable,
  async fn() {
    using disk = tinyDisk("256k")!;
    await using dir = await tempDir();
    const marks = join(dir.path, "marks");
    const port = freePort();
    const flags = ["--port", String(port), "--pulse", "1s", "--lease", "20s"];
    const job = `echo run >> ${marks}; sleep 2; echo slow-out`;
    const { manager: first, list, results } = await startManagerOn(dir.path, [job], flags);
    await using _first = first;
    await first.waitFor(/Serving 1 job/);
    const stateDir = join(disk.path, "state");
    await using runner = startRunner(port, [
      "--persist",
      "--state-dir",
      stateDir,
      "--name",
      "svc",
      "--retry-max",
      "1s",
    ]);
    await first.waitFor(/Runner svc joined/);
    await new Promise((r) => setTimeout(r, 500)); // the job runs, its record written
    fill(join(disk.path, "filler"));
    first.kill("SIGKILL");
    await first.exit();
    await runner.waitFor(
      /Could not keep the result of .*slow-out: .*(No space left on device|os error 28).*; it is lost, and the manager hands the job out again/,
      10_000,
    );
    assert.deepEqual(
      [...Deno.readDirSync(join(stateDir, "pending"))],
      [],
      "nothing half-written left to fill the disk",
    );
    Deno.removeSync(join(disk.path, "filler"));
    const { manager: second } = await startManagerAgain({ list, results }, flags);
    await using _second = second;
    assert.equal((await second.exit(60_000)).code, 0, second.stderr);
    const recs = readRecords(results);
    assert.equal(recs.length, 1, "recorded once");
    assert.equal(dec.decode(readOutput(results, byLine(recs).get(1)!)), "slow-out\n");
    assert.equal(Deno.readTextFileSync(marks), "run\nrun\n", "it ran again, the first result being lost");
    runner.kill("SIGTERM");
    assert.equal((await runner.exit()).code, 0, runner.stderr);
    assert.doesNotMatch(runner.stderr, /Uncaught|unhandled|^ {4}at /im);
  },
});

/** Runs `mount` with `args`; whether it worked. */
function mount(...args: string[]): boolean {
  return new Deno.Command("mount", { args, stdout: "null", stderr: "null" }).outputSync().success;
}

/** Whether a directory can be made read-only here by a read-only bind mount over it (root only). */
const canBindReadOnly = (() => {
  const dir = Deno.makeTempDirSync();
  try {
    if (!mount("--bind", dir, dir)) return false;
    const ro = mount("-o", "remount,bind,ro", dir);
    new Deno.Command("umount", { args: [dir] }).outputSync();
    return ro;
  } finally {
    Deno.removeSync(dir);
  }
})();
if (!canBindReadOnly) {
  console.warn("persist_io_test: cannot bind-mount read-only here (not root?); that case is skipped");
}

/** What befalls the state directory of a running runner; what undoes it. */
const failures: {
  what: string;
  ignore: boolean;
  says: (stateDir: string) => RegExp;
  befall: (stateDir: string) => Disposable;
}[] = [
  {
    what: "is removed under it",
    ignore: false,
    says: (stateDir) => new RegExp(`State directory ${stateDir} was removed or replaced under this runner`),
    befall: (stateDir) => {
      Deno.removeSync(stateDir, { recursive: true });
      return { [Symbol.dispose]() {} };
    },
  },
  {
    // The runner's open files stay writable; whatever it opens by name from now on is not.
    what: "becomes read-only under it",
    ignore: !canBindReadOnly,
    says: (stateDir) => new RegExp(`Cannot record jobs in the state directory ${stateDir}: .*Read-only file system`),
    befall: (stateDir) => {
      assert.ok(mount("--bind", stateDir, stateDir) && mount("-o", "remount,bind,ro", stateDir));
      return { [Symbol.dispose]: () => void new Deno.Command("umount", { args: [stateDir] }).outputSync() };
    },
  },
];

for (const { what, ignore, says, befall } of failures) {
  Deno.test({
    name:
      `runner --persist whose state directory ${what}: the running job is reported, the next one given back; it exits 1 saying why, and the job runs elsewhere`,
    ignore,
    async fn() {
      await using dir = await tempDir();
      await using state = await tempDir();
      const port = freePort();
      const jobs = ["sleep 1.5; echo a", "echo b", "echo c"];
      const { manager, results } = await startManagerOn(dir.path, jobs, ["--port", String(port), "--pulse", "1s"]);
      await using _m = manager;
      await manager.waitFor(/Serving 3 job/);
      const stateDir = join(state.path, "svc");
      await using svc = startRunner(port, ["--persist", "--state-dir", stateDir, "--name", "svc", "--workers", "1"]);
      await manager.waitFor(/Runner svc joined/);
      await new Promise((r) => setTimeout(r, 500)); // job a runs
      using _befallen = befall(stateDir);
      const end = await svc.exit(20_000);
      assert.equal(end.code, 1, svc.stderr);
      assert.match(svc.stderr, says(stateDir));
      assert.doesNotMatch(svc.stderr, /Uncaught|unhandled|^ {4}at /im);
      await using other = startRunner(port, ["--name", "other"]);
      assert.equal((await manager.exit(60_000)).code, 0, manager.stderr);
      await other.exit();
      const recs = byLine(readRecords(results));
      assert.equal(readRecords(results).length, 3, "each job recorded once");
      for (const [line, out] of [[1, "a\n"], [2, "b\n"], [3, "c\n"]] as const) {
        assert.equal(recs.get(line)?.status, 0, `job ${line} succeeded: ${JSON.stringify(recs.get(line))}`);
        assert.equal(dec.decode(readOutput(results, recs.get(line)!)), out);
      }
      assert.equal(recs.get(1)?.host, "svc", "the running job was reported by svc");
    },
  });
}

/** Damage done to a kept result on disk while its runner is stopped, and what the runner then says. */
const damages: { what: string; says: RegExp; damage: (base: string) => void }[] = [
  {
    what: "its output truncated",
    says: /Set aside the kept result \d+: damaged: its output is 2 bytes, its record says 6/,
    damage: (base) => Deno.truncateSync(base + ".out", 2),
  },
  {
    what: "its .json garbled",
    says: /Set aside the kept result \d+: damaged: its record is not JSON/,
    damage: (base) => Deno.writeTextFileSync(base + ".json", '{"command":"echo run >> '),
  },
];

for (const { what, says, damage } of damages) {
  Deno.test(`runner --persist restarted with a kept result ${what}: it is set aside as damaged, never delivered, and the manager runs the job again, recorded once with the right bytes`, async () => {
    await using dir = await tempDir();
    await using state = await tempDir();
    const marks = join(dir.path, "marks");
    const port = freePort();
    const flags = ["--port", String(port), "--pulse", "1s", "--lease", "20s"];
    const { manager: first, list, results } = await startManagerOn(dir.path, [
      `echo run >> ${marks}; sleep 1.5; echo out-x`,
    ], flags);
    await using _first = first;
    await first.waitFor(/Serving 1 job/);
    const args = ["--persist", "--state-dir", state.path, "--name", "svc", "--retry-max", "1s"];
    const svc = startRunner(port, args);
    await using _svc = svc;
    await first.waitFor(/Runner svc joined/);
    await new Promise((r) => setTimeout(r, 300));
    first.kill("SIGKILL");
    await first.exit();
    await svc.waitFor(/Kept the result of .*out-x until a manager takes it/, 10_000);
    svc.kill("SIGTERM");
    assert.equal((await svc.exit()).code, 0, svc.stderr);
    const [json] = [...Deno.readDirSync(join(state.path, "pending"))].filter((e) => e.name.endsWith(".json"));
    damage(join(state.path, "pending", json.name.slice(0, -".json".length)));
    const { manager: second } = await startManagerAgain({ list, results }, flags);
    await using _second = second;
    await using again = startRunner(port, args);
    assert.equal((await second.exit(60_000)).code, 0, second.stderr);
    const recs = readRecords(results);
    assert.equal(recs.length, 1, "recorded once");
    assert.equal(recs[0].status, 0);
    assert.equal(dec.decode(readOutput(results, recs[0])), "out-x\n", "the right bytes, from the run again");
    assert.equal(Deno.readTextFileSync(marks), "run\nrun\n");
    await again.waitFor(says);
    again.kill("SIGTERM");
    assert.equal((await again.exit()).code, 0, again.stderr);
    assert.doesNotMatch(again.stderr, /Uncaught|unhandled|^ {4}at /im);
  });
}
