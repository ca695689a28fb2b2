/**
 * `runner --persist`: a runner that outlives its manager. Jobs keep running
 * while the manager is gone; results wait in the runner's state directory;
 * a restarted manager waits (a lease) for the runner, which announces what
 * it holds and delivers what finished.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import {
  EntryProcess,
  freePort,
  startManagerAgain,
  startManagerOn,
  startManagerOnTasks,
  startNode,
  startRunner,
} from "../helpers/entry_process.ts";
import { byLine, readJournal, readOutput, readRecords, tempDir } from "../helpers/journal.ts";
import { RunnerState } from "../../runner/service/runner_state.ts";
import { formatTag } from "../../protocol/vico_extension.ts";

const dec = new TextDecoder();

Deno.test("runner --persist: jobs run on through a manager crash; the restarted manager takes their results, nothing twice", async () => {
  await using dir = await tempDir();
  await using state = await tempDir();
  const marks = join(dir.path, "marks");
  await Deno.mkdir(marks);
  const jobs = Array.from(
    { length: 6 },
    (_, i) => `echo run >> ${marks}/${i}; sleep ${i < 2 ? 2 : 0.1}; echo out-${i}`,
  );
  const port = freePort();
  const flags = ["--port", String(port), "--pulse", "1s", "--lease", "20s"];
  const { manager: first, list, results } = await startManagerOn(dir.path, jobs, flags);
  await using _first = first;
  await first.waitFor(/Serving 6 job/);
  await using runner = startRunner(port, ["--persist", "--state-dir", state.path, "--workers", "2", "--name", "svc"]);
  await first.waitFor(/Runner svc joined/);
  await new Promise((r) => setTimeout(r, 500)); // the two slow jobs are running
  first.kill("SIGKILL");
  await first.exit();
  await runner.waitFor(/Lost the manager: .*2 job\(s\) keep running; retrying/);
  // The slow jobs finish while no manager exists: their results go to disk.
  await runner.waitFor(/Kept the result of .*sleep 2/, 10_000);
  await runner.waitFor(/Kept the result of .*sleep 2.*\n[^]*Kept the result of .*sleep 2/, 10_000);
  const { manager: second } = await startManagerAgain({ list, results }, flags);
  await using _second = second;
  const ms = await second.exit(60_000);
  assert.equal(ms.code, 0, second.stderr);
  const recs = byLine(readRecords(results));
  assert.equal(recs.size, 6, "every job recorded");
  assert.equal(readRecords(results).length, 6, "and only once");
  for (let i = 0; i < 6; i++) {
    assert.equal(dec.decode(readOutput(results, recs.get(i + 1)!)), `out-${i}\n`);
    assert.equal(Deno.readTextFileSync(join(marks, String(i))), "run\n", `job ${i} ran exactly once`);
  }
  assert.match(second.stderr, /Runner svc joined/);
  const assigns = readJournal(results).filter((r) => r.type === "assign");
  assert.ok(assigns.length >= 2, "the first run recorded which runner held what");
  runner.kill("SIGTERM");
  assert.equal((await runner.exit()).code, 0, runner.stderr);
});

Deno.test("runner --persist: a lease that runs out hands the jobs to others; the late result is discarded", async () => {
  await using dir = await tempDir();
  await using state = await tempDir();
  // The second job keeps the manager up until the paused runner is back.
  const jobs = ["sleep 1.5; echo slow", "sleep 8; echo keeper"];
  const port = freePort();
  const { manager, results } = await startManagerOn(dir.path, jobs, [
    "--port",
    String(port),
    "--pulse",
    "1s",
    "--lease",
    "1s",
  ]);
  await using _m = manager;
  // A persistent runner that goes silent (paused: like a network partition),
  // then comes back with the result it finished meanwhile.
  await using svc = startRunner(port, ["--persist", "--state-dir", state.path, "--name", "svc"]);
  await manager.waitFor(/Runner svc joined/);
  await new Promise((r) => setTimeout(r, 200));
  svc.kill("SIGSTOP");
  await manager.waitFor(/Runner .* is gone holding 1 job\(s\); they wait 1s/, 15_000);
  await manager.waitFor(/1 job\(s\) of runner .* go back to the queue/, 15_000);
  await using other = startRunner(port, ["--name", "other", "--workers", "2"]);
  await manager.waitFor(/Runner other joined/);
  svc.kill("SIGCONT");
  const [ms] = await Promise.all([manager.exit(60_000), other.exit()]);
  assert.equal(ms.code, 0, manager.stderr);
  const records = readRecords(results);
  assert.equal(records.length, 2, "each job recorded once");
  assert.match(
    manager.stderr,
    /reported sleep 1\.5; echo slow again after it was recorded: acknowledged and discarded|was already recorded; the result from \S+ is discarded/,
  );
  svc.kill("SIGTERM");
  assert.equal((await svc.exit()).code, 0, svc.stderr);
});

Deno.test("runner --persist: outlives an empty queue and takes the next manager's jobs", async () => {
  await using dir = await tempDir();
  await using state = await tempDir();
  const port = freePort();
  await using svc = startRunner(port, ["--persist", "--state-dir", state.path, "--name", "svc", "--retry-max", "1s"]);
  await svc.waitFor(/Cannot connect to the manager .*; retrying/);
  for (const round of [1, 2]) {
    const list = join(dir.path, `jobs${round}.txt`);
    await Deno.writeTextFile(list, `echo round ${round}\n`);
    const results = join(dir.path, `res${round}`);
    const manager = EntryProcess.spawn("manager.ts", ["--jobs", list, "--results", results, "--port", String(port)]);
    await using _m = manager;
    assert.equal((await manager.exit(60_000)).code, 0, manager.stderr);
    assert.equal(dec.decode(readOutput(results, readRecords(results)[0])), `round ${round}\n`);
  }
  assert.equal(svc.child.pid > 0, true);
  svc.kill("SIGTERM");
  assert.equal((await svc.exit()).code, 0);
  assert.equal([...svc.stderr.matchAll(/Cannot connect to the manager/g)].length, 1, "said once while down");
});

Deno.test("runner --persist: a second runner on the same --state-dir exits 3 naming the first, which runs on; it starts once the first is gone", async () => {
  await using dir = await tempDir();
  await using state = await tempDir();
  const port = freePort();
  const args = ["--persist", "--state-dir", state.path, "--retry-max", "1s"];
  await using first = startRunner(port, [...args, "--name", "first"]);
  await first.waitFor(/Cannot connect to the manager .*; retrying/);
  await using second = startRunner(port, [...args, "--name", "second"]);
  const refused = await second.exit();
  assert.equal(refused.code, 3, second.stderr);
  assert.match(
    second.stderr,
    new RegExp(`State directory .* is in use by another runner: pid ${first.child.pid} on .*--state-dir of its own`),
  );
  assert.doesNotMatch(second.stderr, /Cannot connect/, "it never tried to connect");
  // The first one still serves: a manager's job runs on it.
  const { manager, results } = await startManagerOn(dir.path, ["echo served"], ["--port", String(port)]);
  await using _m = manager;
  assert.equal((await manager.exit(60_000)).code, 0, manager.stderr);
  assert.match(manager.stderr, /Runner first joined/);
  assert.equal(dec.decode(readOutput(results, readRecords(results)[0])), "served\n");
  // Killed outright, the first lets the directory go (the kernel drops its lock).
  first.kill("SIGKILL");
  await first.exit();
  await using third = startRunner(port, [...args, "--name", "third"]);
  await third.waitFor(/Cannot connect to the manager .*; retrying/);
  third.kill("SIGTERM");
  assert.equal((await third.exit()).code, 0, third.stderr);
});

for (const restartNode of [false, true]) {
  Deno.test(
    `runner --persist --protocol binary: a task runs on through a manager crash and is delivered after a new Join${
      restartNode ? ", even after the node itself restarts" : ""
    }`,
    async () => {
      await using dir = await tempDir();
      await using state = await tempDir();
      const marks = join(dir.path, "marks");
      const task = {
        name: "long",
        command: `echo run >> ${marks}; sleep 1.5; echo done > out.txt; echo finished`,
        return: ["out.txt"],
      };
      const port = freePort();
      const flags = ["--port", String(port), "--pulse", "1s", "--lease", "30s"];
      const { manager: first, list, results } = await startManagerOnTasks(dir.path, [task], flags);
      await using _first = first;
      await first.waitFor(/Serving 1 job/);
      const nodeArgs = ["--persist", "--state-dir", state.path, "--retry-max", "1s"];
      let node = startNode(port, nodeArgs);
      await using _node = node;
      await first.waitFor(/Node 127\.0\.0\.1 joined/);
      await new Promise((r) => setTimeout(r, 500));
      first.kill("SIGKILL");
      await first.exit();
      await node.waitFor(/Lost the manager in the middle of task .*; it runs on/, 10_000);
      await node.waitFor(/Kept the results of task/, 10_000);
      if (restartNode) {
        node.kill("SIGKILL");
        await node.exit();
        node = startNode(port, nodeArgs);
      }
      await using _node2 = node;
      const { manager: second } = await startManagerAgain({ list, results }, flags);
      await using _second = second;
      assert.equal((await second.exit(60_000)).code, 0, second.stderr);
      assert.match(second.stderr, /Node 127\.0\.0\.1:\d+ \(.*\) is back with the task at line 1/);
      const [rec] = readRecords(results);
      assert.equal(rec.status, 0);
      assert.equal(dec.decode(readOutput(results, rec)), "finished\n");
      assert.equal(Deno.readTextFileSync(join(results, rec.files![0].path!)), "done\n");
      assert.equal(Deno.readTextFileSync(marks), "run\n", "the task ran exactly once");
      node.kill("SIGTERM");
      await node.exit();
    },
  );
}

/** Whether a process exists and is not a zombie (orphans may never be reaped where pid 1 is no init). */
async function alive(pid: number): Promise<boolean> {
  const out = await new Deno.Command("/bin/sh", {
    args: ["-c", 'read -r s < "/proc/$0/stat" 2>/dev/null || exit 1; s=${s##*) }; [ "${s%% *}" != Z ]', String(pid)],
  }).output();
  return out.success;
}

Deno.test("runner --persist: started again after a SIGKILL, it first ends the jobs its previous life left running", async () => {
  await using dir = await tempDir();
  await using state = await tempDir();
  const again = join(dir.path, "again");
  const pids = join(dir.path, "pids");
  const { manager, port, results } = await startManagerOn(dir.path, [
    `if [ -e ${again} ]; then echo second; exit 0; fi; ` +
    `sleep 281.2 >/dev/null 2>&1 & echo $! >> ${pids}; echo $$ >> ${pids}; sleep 281.3`,
  ]);
  await using _m = manager;
  const args = ["--persist", "--state-dir", state.path, "--name", "svc", "--retry-max", "1s"];
  const first = startRunner(port, args);
  await using _first = first;
  let left: number[] = [];
  try {
    for (let i = 0; i < 100 && left.length < 2; i++) {
      await new Promise((r) => setTimeout(r, 100));
      left = (await Deno.readTextFile(pids).catch(() => "")).split("\n").filter((l) => l !== "").map(Number);
    }
    assert.equal(left.length, 2, "the job is running");
    first.kill("SIGKILL");
    await first.exit();
    await new Promise((r) => setTimeout(r, 200));
    for (const pid of left) assert.equal(await alive(pid), true, "a SIGKILLed runner cannot end its job itself");
    await Deno.writeTextFile(again, "");
    await using second = startRunner(port, args);
    await second.waitFor(/Ending 1 job\(s\) left running by this runner's previous life/);
    assert.equal((await manager.exit(30_000)).code, 0, manager.stderr);
    for (const pid of left) assert.equal(await alive(pid), false, `process ${pid} of the previous life is gone`);
    assert.equal(dec.decode(readOutput(results, readRecords(results)[0])), "second\n");
    second.kill("SIGTERM");
    assert.equal((await second.exit()).code, 0, second.stderr);
    assert.deepEqual([...Deno.readDirSync(join(state.path, "running"))].length, 0, "nothing left recorded");
  } finally {
    for (const pid of left) if (pid > 1 && await alive(pid)) Deno.kill(pid, "SIGKILL");
  }
});

Deno.test("runner --persist: a kept result the manager already recorded (acked, then SIGKILLed before disposing it) is forgotten, not set aside", async () => {
  await using dir = await tempDir();
  await using state = await tempDir();
  const port = freePort();
  const flags = ["--port", String(port), "--pulse", "1s"];
  // The second job keeps the restarted manager up while the runner announces what it holds.
  const { manager: first, list, results } = await startManagerOn(dir.path, ["echo done", "sleep 1; echo later"], flags);
  await using _first = first;
  await using svc = startRunner(port, ["--persist", "--state-dir", state.path, "--name", "svc", "--retry-max", "1s"]);
  await first.waitFor(/Runner svc joined/);
  await new Promise((r) => setTimeout(r, 300)); // "echo done" is recorded
  first.kill("SIGKILL");
  await first.exit();
  svc.kill("SIGKILL");
  await svc.exit();
  const done = readRecords(results).find((r) => r.command === "echo done");
  assert.ok(done !== undefined, "echo done was recorded by the first manager");
  const assign = readJournal(results).find((r) => r.type === "assign" && r.key === done.key) as { run: string };
  // What a runner SIGKILLed between the manager's acknowledgement and its dispose leaves in its state directory.
  {
    using kept = await RunnerState.open(state.path);
    const tag = formatTag({ run: assign.run, key: done.key, attempt: done.attempt });
    const bytes = new TextEncoder().encode("done\n");
    await kept.store({ command: "echo done", tag }, 0, { size: bytes.length, pipeTo: (sink) => sink(bytes) });
  }
  const { manager: second } = await startManagerAgain({ list, results }, flags);
  await using _second = second;
  await using again = startRunner(port, ["--persist", "--state-dir", state.path, "--name", "svc", "--retry-max", "1s"]);
  assert.equal((await second.exit(30_000)).code, 0, second.stderr);
  assert.equal(readRecords(results).filter((r) => r.command === "echo done").length, 1, "recorded once");
  again.kill("SIGTERM");
  assert.equal((await again.exit()).code, 0, again.stderr);
  assert.deepEqual([...Deno.readDirSync(join(state.path, "set-aside"))], [], again.stderr);
  assert.deepEqual([...Deno.readDirSync(join(state.path, "pending"))], [], again.stderr);
  assert.doesNotMatch(again.stderr, /Set aside/);
});
