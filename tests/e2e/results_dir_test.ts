/**
 * A results directory vico owns: one manager at a time (a lock the kernel
 * drops with its holder), nothing deleted or moved that vico did not make,
 * and start-up I/O failures end with exit 3 and their reason.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { EntryProcess, freePort, startManagerOn } from "../helpers/entry_process.ts";
import { byLine, readRecords, tempDir } from "../helpers/journal.ts";
import { fill, tinyDisk } from "../helpers/tiny_disk.ts";

/** Every file and directory under `dir` with its bytes, for "left byte-identical". */
function snapshot(dir: string, prefix = ""): Map<string, string> {
  const out = new Map<string, string>();
  for (const e of Deno.readDirSync(join(dir, prefix))) {
    const rel = prefix === "" ? e.name : `${prefix}/${e.name}`;
    if (e.isDirectory) {
      out.set(rel + "/", "");
      for (const [k, v] of snapshot(dir, rel)) out.set(k, v);
    } else out.set(rel, Deno.readTextFileSync(join(dir, rel)));
  }
  return out;
}

/** A project folder that is not a results directory, with a `tmp/` of its own. */
async function project(dir: string): Promise<string> {
  const path = join(dir, "project");
  await Deno.mkdir(join(path, "tmp"), { recursive: true });
  await Deno.mkdir(join(path, "src"));
  await Deno.writeTextFile(join(path, "README.md"), "my project\n");
  await Deno.writeTextFile(join(path, "tmp", "keep.txt"), "precious scratch\n");
  await Deno.writeTextFile(join(path, "src", "main.sh"), "echo hi\n");
  await Deno.writeTextFile(join(path, "jobs.txt"), "echo a\necho b\n");
  return path;
}

async function run(args: string[], cwd?: string): Promise<{ code: number; out: EntryProcess }> {
  const out = EntryProcess.spawn("manager.ts", args, { cwd });
  return { code: (await out.exit()).code, out };
}

Deno.test("ResultsDir lock: a second manager on the same results directory exits 3 naming the holder; the first finishes untouched", async () => {
  await using dir = await tempDir();
  const jobs = Array.from({ length: 20 }, (_, i) => `sleep 0.2; echo job ${i}`);
  const first = await startManagerOn(dir.path, jobs, ["--local", "1"]);
  await using a = first.manager;
  const second = await run(["--jobs", first.list, "--results", first.results, "--local", "2", "--port", "0"]);
  assert.equal(second.code, 3, second.out.stderr);
  assert.match(
    second.out.stderr,
    new RegExp(`in use by another manager: pid ${a.pid} on ${Deno.hostname()} since \\d{4}-\\d\\d-\\d\\dT`),
  );
  assert.equal((await a.exit()).code, 0, a.stderr);
  const records = byLine(readRecords(first.results)); // throws on a line recorded twice
  assert.equal(records.size, 20);
  const verify = await run(["verify", first.results]);
  assert.equal(verify.code, 0, verify.out.stdout);
});

Deno.test("ResultsDir lock: released by the kernel when its manager is SIGKILLed; the next manager starts", async () => {
  await using dir = await tempDir();
  const started = join(dir.path, "started");
  // The job outlives its manager: the lock must not live on in it.
  const first = await startManagerOn(dir.path, [`touch ${started}; sleep 8`], ["--local", "1"]);
  while (!(await Deno.stat(started).then(() => true, () => false))) await new Promise((r) => setTimeout(r, 20));
  first.manager.kill("SIGKILL");
  await first.manager.exit();
  const killedAt = performance.now();
  await Deno.writeTextFile(join(dir.path, "more.txt"), "echo after\n");
  const next = await run(["--jobs", join(dir.path, "more.txt"), "--results", first.results, "--local", "1"]);
  assert.equal(next.code, 0, next.out.stderr);
  assert.ok(performance.now() - killedAt < 8000, "started while the killed manager's job still ran");
  assert.equal(readRecords(first.results).filter((r) => r.command === "echo after").length, 1);
});

Deno.test("ResultsDir.claim: a non-empty directory that is not vico's is refused (exit 3) and left byte-identical", async () => {
  await using dir = await tempDir();
  const path = await project(dir.path);
  const before = snapshot(path);
  for (const extra of [[], ["--fresh"]]) {
    const r = await run(["--jobs", join(path, "jobs.txt"), "--results", path, "--local", "1", ...extra]);
    assert.equal(r.code, 3, r.out.stderr);
    assert.match(r.out.stderr, /is not a vico results directory/);
    assert.deepEqual(snapshot(path), before, `nothing touched (${extra.join(" ") || "no --fresh"})`);
    assert.deepEqual([...Deno.readDirSync(dir.path)].map((e) => e.name), ["project"], "nothing moved aside");
  }
});

Deno.test("ResultsDir.claim: an empty directory and one from an earlier vico (journal, out/, tmp/) are taken and marked", async () => {
  await using dir = await tempDir();
  const list = join(dir.path, "jobs.txt");
  await Deno.writeTextFile(list, "echo a\n");
  const empty = join(dir.path, "empty");
  await Deno.mkdir(empty);
  assert.equal((await run(["--jobs", list, "--results", empty, "--local", "1"])).code, 0);
  assert.ok(Deno.statSync(join(empty, ".vico-results")).isFile);
  // An older vico's directory: no marker, a journal, out/ and a leftover tmp/.
  const legacy = join(dir.path, "legacy");
  await Deno.mkdir(join(legacy, "out"), { recursive: true });
  await Deno.mkdir(join(legacy, "tmp"));
  await Deno.writeTextFile(join(legacy, "tmp", "99-1.part"), "half");
  await Deno.writeTextFile(join(legacy, "journal.jsonl"), "");
  assert.equal((await run(["--jobs", list, "--results", legacy, "--local", "1"])).code, 0);
  assert.ok(Deno.statSync(join(legacy, ".vico-results")).isFile);
  assert.deepEqual([...Deno.readDirSync(join(legacy, "tmp"))], [], "its leftover temporary output removed");
  assert.equal(readRecords(legacy).length, 1);
});

Deno.test("ResultsDir.rotate: --fresh moves nothing aside when the port is in use", async () => {
  await using dir = await tempDir();
  const list = join(dir.path, "jobs.txt");
  await Deno.writeTextFile(list, "echo a\n");
  const results = join(dir.path, "res");
  assert.equal((await run(["--jobs", list, "--results", results, "--local", "1"])).code, 0);
  const before = snapshot(results);
  const port = freePort();
  using _busy = Deno.listen({ hostname: "127.0.0.1", port });
  const r = await run(["--jobs", list, "--results", results, "--port", String(port), "--fresh"]);
  assert.equal(r.code, 3, r.out.stderr);
  assert.match(r.out.stderr, /already in use/);
  assert.deepEqual([...Deno.readDirSync(dir.path)].map((e) => e.name).sort(), ["jobs.txt", "res"]);
  const after = snapshot(results);
  // The lock file names the last holder; everything else is as it was.
  for (const s of [before, after]) s.delete(".vico-lock");
  assert.deepEqual(after, before);
});

Deno.test("ResultsDir.rotate: --results . --fresh ends with a clear error (exit 3), in a project or inside a results directory", async () => {
  await using dir = await tempDir();
  const path = await project(dir.path);
  const foreign = await run(["--jobs", "jobs.txt", "--results", ".", "--local", "1", "--fresh"], path);
  assert.equal(foreign.code, 3, foreign.out.stderr);
  assert.match(foreign.out.stderr, /is not a vico results directory/);
  assert.doesNotMatch(foreign.out.stderr, /Uncaught/);
  // Inside a vico results directory: moving the current directory aside is refused.
  const results = join(dir.path, "res");
  assert.equal((await run(["--jobs", join(path, "jobs.txt"), "--results", results, "--local", "1"])).code, 0);
  const before = snapshot(results);
  const inside = await run(["--jobs", join(path, "jobs.txt"), "--results", ".", "--local", "1", "--fresh"], results);
  assert.equal(inside.code, 3, inside.out.stderr);
  assert.match(inside.out.stderr, /--fresh cannot move it aside: it is the current directory/);
  assert.doesNotMatch(inside.out.stderr, /Uncaught/);
  const after = snapshot(results);
  for (const s of [before, after]) s.delete(".vico-lock");
  assert.deepEqual(after, before);
});

Deno.test("manager --jobs jobs.jsonl beside a jobs.txt run: refuses the shared default results directory, naming both, exit 3; --results works", async () => {
  await using dir = await tempDir();
  await Deno.writeTextFile(join(dir.path, "jobs.txt"), "echo a\necho b\n");
  await Deno.writeTextFile(
    join(dir.path, "jobs.jsonl"),
    JSON.stringify({ name: "x", run: [{ command: "echo hi", log: "run.log" }] }) + "\n",
  );
  const results = join(dir.path, "jobs.results");
  const first = await run(["--jobs", "jobs.txt", "--local", "1", "-q"], dir.path);
  assert.equal(first.code, 0, first.out.stderr);
  const before = snapshot(results);
  // Both lists' default is jobs.results: the second is refused, before anything is moved, recorded or run.
  for (const extra of [[], ["--resume"], ["--fresh"]]) {
    const other = await run(["--jobs", join(dir.path, "jobs.jsonl"), "--local", "1", "-q", ...extra], dir.path);
    assert.equal(other.code, 3, other.out.stderr);
    assert.match(
      other.out.stderr,
      /jobs\.results holds the results of jobs\.txt, not jobs\.jsonl: give this list its own with --results DIR/,
    );
    assert.doesNotMatch(other.out.stderr, /Uncaught/);
    const after = snapshot(results);
    for (const s of [before, after]) s.delete(".vico-lock");
    assert.deepEqual(after, before, `nothing recorded (${extra.join(" ") || "no flag"})`);
    const names = [...Deno.readDirSync(dir.path)].map((e) => e.name).sort();
    assert.deepEqual(names, ["jobs.jsonl", "jobs.results", "jobs.txt"], "nothing moved aside");
  }
  // Its own directory, or the shared one named on purpose, works.
  const own = await run(["--jobs", "jobs.jsonl", "--results", "tasks.results", "--local", "1", "-q"], dir.path);
  assert.equal(own.code, 0, own.out.stderr);
  assert.equal(readRecords(join(dir.path, "tasks.results")).length, 1);
  const shared = await run(["--jobs", "jobs.jsonl", "--results", "jobs.results", "--local", "1", "-q"], dir.path);
  assert.equal(shared.code, 0, shared.out.stderr);
  assert.equal(readRecords(results).length, 3);
  // The same list by another path (absolute here, relative first) is the same list: it resumes.
  const again = await run(["--jobs", join(dir.path, "jobs.txt"), "--local", "1"], dir.path);
  assert.equal(again.code, 0, again.out.stderr);
  assert.match(again.out.stdout + again.out.stderr, /2 job\(s\) were settled by an earlier run and not run again/);
});

const canMount = tinyDisk();
canMount?.[Symbol.dispose]();

Deno.test({
  name:
    "ResultsDir.claim: a full disk at start exits 3 with the reason, for a new and for an existing results directory",
  ignore: canMount === undefined,
  async fn() {
    await using dir = await tempDir();
    const list = join(dir.path, "jobs.txt");
    await Deno.writeTextFile(list, "echo a\n");
    // A new results directory on a full disk.
    {
      using disk = tinyDisk()!;
      fill(join(disk.path, "filler"));
      const r = await run(["--jobs", list, "--results", join(disk.path, "res"), "--local", "1"]);
      assert.equal(r.code, 3, r.out.stderr);
      assert.match(r.out.stderr, /cannot start: .*(No space left on device|os error 28)/);
      assert.doesNotMatch(r.out.stderr, /Uncaught|unhandled/i);
    }
    // An existing one whose journal has no room for the run's record: its
    // last page is full (padded to 4096 bytes) and so is the disk.
    {
      using disk = tinyDisk()!;
      const results = join(disk.path, "res");
      assert.equal((await run(["--jobs", list, "--results", results, "--local", "1"])).code, 0);
      const journal = join(results, "journal.jsonl");
      const text = Deno.readTextFileSync(journal);
      const last = text.trimEnd().split("\n").at(-1)!;
      const pad = 4096 - new TextEncoder().encode(text).length;
      Deno.writeTextFileSync(journal, text.slice(0, text.length - last.length - 1) + last + " ".repeat(pad) + "\n");
      assert.equal(Deno.statSync(journal).size, 4096);
      fill(join(disk.path, "filler"));
      await Deno.writeTextFile(join(dir.path, "more.txt"), "echo b\n");
      const r = await run(["--jobs", join(dir.path, "more.txt"), "--results", results, "--local", "1"]);
      assert.equal(r.code, 3, r.out.stderr);
      assert.match(r.out.stderr, /cannot start: .*cannot record the run .*(No space left on device|os error 28)/);
      assert.doesNotMatch(r.out.stderr, /Uncaught|unhandled/i);
    }
  },
});

Deno.test({
  name:
    "results on a disk without room for a big output (written directly past 8 MiB): the run stops at once, exit 3 with the system's reason; the job is not recorded as lost (it runs again on the next start), nothing left in tmp/",
  ignore: canMount === undefined,
  async fn() {
    await using dir = await tempDir();
    using disk = tinyDisk("12m")!;
    const list = join(dir.path, "jobs.txt");
    await Deno.writeTextFile(list, "head -c 20000000 /dev/zero\necho small\n");
    const results = join(disk.path, "res");
    const r = await run(["--jobs", list, "--results", results, "--local", "1", "--no-progress"]);
    assert.equal(r.code, 3, r.out.stderr);
    assert.match(
      r.out.stderr,
      new RegExp(`Cannot record results in ${results}: .*No space left on device \\(os error 28\\).*; stopping now`),
    );
    // The disk failed, not the job: it is not settled as lost (before: tried three times, then given up).
    assert.doesNotMatch(r.out.stderr, /given up as lost/);
    assert.doesNotMatch(r.out.stderr, /Uncaught|unhandled/i);
    const records = Deno.readTextFileSync(join(results, "journal.jsonl")).trim().split("\n").map((l) => JSON.parse(l));
    assert.equal(records.find((rec) => rec.type === "job" && rec.line === 1), undefined, "it runs again next time");
    assert.match(r.out.stdout, /run again on the same results to finish/);
    assert.deepEqual([...Deno.readDirSync(join(results, "tmp"))], [], "no staged output left behind");
  },
});

Deno.test({
  name:
    "results disk full under a separate runner: the manager stops at once, exit 3 with the reason (it dropped the runner and waited for others forever)",
  ignore: canMount === undefined,
  async fn() {
    await using dir = await tempDir();
    using disk = tinyDisk()!;
    const list = join(dir.path, "jobs.txt");
    await Deno.writeTextFile(list, "echo small1\nhead -c 200000 /dev/zero\necho small2\necho small3\n");
    const results = join(disk.path, "res");
    const port = freePort();
    await using manager = EntryProcess.spawn("manager.ts", [
      ...["--jobs", list, "--results", results, "--port", String(port), "--no-progress"],
    ]);
    await manager.waitFor(/Serving 4 job/);
    await using runner = EntryProcess.spawn("runner.ts", ["--manager", `127.0.0.1:${port}`, "--workers", "2"]);
    const started = performance.now();
    const status = await manager.exit();
    assert.equal(status.code, 3, manager.stderr);
    assert.ok(performance.now() - started < 20_000, "it does not wait for other runners");
    assert.match(
      manager.stderr,
      /Cannot record results in .*: No space left on device \(os error 28\).*; stopping now/,
    );
    assert.doesNotMatch(manager.stderr, /given up as lost/);
    await runner.exit();
    assert.equal(readRecords(results).filter((r) => r.line === 2).length, 0, "the big job runs again next time");
  },
});

Deno.test("a start that fails at the port leaves no results directory it made; one that was there stays as it was", async () => {
  await using dir = await tempDir();
  const list = join(dir.path, "jobs.txt");
  await Deno.writeTextFile(list, "true\n");
  using taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = String(taken.addr.port);
  const typo = join(dir.path, "reslts");
  const busy = await run(["--jobs", list, "--results", typo, "--port", port]);
  assert.equal(busy.code, 3, busy.out.stderr);
  assert.match(busy.out.stderr, /already in use/);
  assert.equal(
    await Deno.lstat(typo).then(() => true, () => false),
    false,
    "the mistyped directory is not left behind",
  );
  // A results directory of an earlier run is kept whole.
  const results = join(dir.path, "res");
  assert.equal((await run(["--jobs", list, "--results", results, "--local", "1"])).code, 0);
  const before = [...Deno.readDirSync(results)].map((e) => e.name).sort();
  assert.equal((await run(["--jobs", list, "--results", results, "--port", port])).code, 3);
  assert.deepEqual([...Deno.readDirSync(results)].map((e) => e.name).sort(), before);
});

Deno.test("--results naming a symbolic link to nothing is refused (exit 3) saying so", async () => {
  await using dir = await tempDir();
  const list = join(dir.path, "jobs.txt");
  await Deno.writeTextFile(list, "true\n");
  const link = join(dir.path, "dangling");
  await Deno.symlink(join(dir.path, "nothere"), link);
  const r = await run(["--jobs", list, "--results", link, "--local", "1"]);
  assert.equal(r.code, 3, r.out.stderr);
  assert.match(r.out.stderr, /Results directory .*dangling is a symbolic link to .*nothere, which does not exist/);
  assert.equal(await Deno.lstat(join(dir.path, "nothere")).then(() => true, () => false), false, "nothing made there");
});

Deno.test("--host that does not resolve: exit 3 naming the address, and no results directory left behind", async () => {
  await using dir = await tempDir();
  const list = join(dir.path, "jobs.txt");
  await Deno.writeTextFile(list, "true\n");
  const results = join(dir.path, "res");
  const r = await run(["--jobs", list, "--results", results, "--host", "nosuchhost.invalid", "--insecure"]);
  assert.equal(r.code, 3, r.out.stderr);
  assert.match(r.out.stderr, /^manager: cannot start: cannot listen on nosuchhost\.invalid:7707: /m);
  assert.equal(await Deno.lstat(results).then(() => true, () => false), false);
});
