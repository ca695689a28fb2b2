/**
 * A runner's life with its manager, over real processes: limits it learns
 * from the manager, local workers that come back, a handshake that never
 * ends, results no manager takes.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { freePort, startManagerAgain, startManagerOn, startRunner } from "../helpers/entry_process.ts";
import { byLine, readOutput, readRecords, tempDir } from "../helpers/journal.ts";

const dec = new TextDecoder();

Deno.test("Manager --local with --max-output: a job over the limit gets 125 and a note; the run goes on", async () => {
  await using dir = await tempDir();
  const { manager, results } = await startManagerOn(
    dir.path,
    ["head -c 5000 /dev/zero", "echo after"],
    ["--local", "1", "--max-output", "1000"],
  );
  await using _m = manager;
  const ms = await manager.exit(60_000);
  assert.equal(ms.code, 1, manager.stderr);
  const recs = byLine(readRecords(results));
  assert.equal(recs.get(1)!.status, 125);
  assert.match(
    dec.decode(readOutput(results, recs.get(1)!)),
    /Output exceeds the limit of 1000 bytes; the job was killed/,
  );
  assert.equal(dec.decode(readOutput(results, recs.get(2)!)), "after\n");
});

Deno.test("Runner under a manager's smaller --max-output: the job gets 125, the runner stays and its other job reports", async () => {
  await using dir = await tempDir();
  const { manager, port, results } = await startManagerOn(
    dir.path,
    ["sleep 1; echo slow", "head -c 5000 /dev/zero"],
    ["--max-output", "1000"],
  );
  await using _m = manager;
  await using runner = startRunner(port, ["--workers", "2"]);
  const [ms, rs] = await Promise.all([manager.exit(60_000), runner.exit(60_000)]);
  assert.equal(rs.code, 0, runner.stderr);
  assert.equal(ms.code, 1, manager.stderr);
  assert.doesNotMatch(manager.stderr, /exceeds the limit/, "the runner was not dropped");
  const recs = byLine(readRecords(results));
  assert.equal(recs.get(2)!.status, 125);
  assert.match(
    dec.decode(readOutput(results, recs.get(2)!)),
    /Output exceeds the limit of 1000 bytes; the job was killed/,
  );
  assert.equal(dec.decode(readOutput(results, recs.get(1)!)), "slow\n");
});

/** A loopback endpoint that accepts every connection and never says a word; counts them. */
function blackHole(): { port: number; accepted: () => number } & Disposable {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns: Deno.Conn[] = [];
  (async () => {
    for await (const conn of listener) conns.push(conn);
  })().catch(() => {});
  return {
    port: listener.addr.port,
    accepted: () => conns.length,
    [Symbol.dispose]() {
      listener.close();
      for (const c of conns) c.close();
    },
  };
}

Deno.test("Runner at an endpoint that accepts TCP and never answers: exits 1 after the handshake limit, saying why", async () => {
  using hole = blackHole();
  await using runner = startRunner(hole.port);
  const started = performance.now();
  const rs = await runner.exit(60_000);
  const s = (performance.now() - started) / 1000;
  assert.equal(rs.code, 1, runner.stderr);
  assert.ok(s >= 29 && s < 45, `ended after ${s}s`);
  assert.match(runner.stderr, /accepted the connection but did not complete the handshake within 30s/);
});

Deno.test("Runner: a first SIGINT while it waits for a silent manager, with nothing running, exits at once", async () => {
  using hole = blackHole();
  await using runner = startRunner(hole.port, ["--persist", "--state-dir", await Deno.makeTempDir()]);
  for (let i = 0; i < 100 && hole.accepted() === 0; i++) await new Promise((r) => setTimeout(r, 50));
  assert.equal(hole.accepted(), 1, "the runner connected");
  await new Promise((r) => setTimeout(r, 300));
  runner.kill("SIGINT");
  const rs = await runner.exit(5_000);
  assert.equal(rs.code, 0, runner.stderr);
  assert.match(runner.stderr, /Stopped; ran 0 job/);
});

Deno.test("Manager --local after a failed commit: the run stops at once (exit 3, the reason said); started again once the cause is gone, it finishes the rest", async () => {
  await using dir = await tempDir();
  const { manager, list, results } = await startManagerOn(
    dir.path,
    ["sleep 1.5; echo one", "echo two"],
    ["--local", "1"],
  );
  await using _m = manager;
  // The results' staging directory is broken under the manager: the first commit fails.
  const tmp = join(results, "tmp");
  await Deno.remove(tmp, { recursive: true });
  await Deno.writeTextFile(tmp, "not a directory\n");
  const ms = await manager.exit(60_000);
  assert.equal(ms.code, 3, manager.stderr);
  assert.match(manager.stderr, /Cannot record results in .*; stopping now/);
  assert.doesNotMatch(manager.stderr, /given up as lost/, "the disk failed, not the job");
  await Deno.remove(tmp);
  await Deno.mkdir(tmp);
  const { manager: again } = await startManagerAgain({ list, results }, ["--local", "1"]);
  await using _a = again;
  assert.equal((await again.exit(60_000)).code, 0, again.stderr);
  const recs = byLine(readRecords(results));
  assert.equal(recs.size, 2);
  assert.equal(dec.decode(readOutput(results, recs.get(1)!)), "one\n");
  assert.equal(dec.decode(readOutput(results, recs.get(2)!)), "two\n");
  assert.equal(readRecords(results).length, 2, "each recorded once");
});

/** A --persist runner named keeper that tries again every second while its manager is gone. */
function startKeeper(port: number, stateDir: string) {
  return startRunner(port, ["--persist", "--state-dir", stateDir, "--retry-max", "1s", "--name", "keeper"]);
}

Deno.test("Runner --persist: a kept result over the new manager's --max-output is set aside and reported as 125 with a note", async () => {
  await using dir = await tempDir();
  const stateDir = join(dir.path, "state");
  const port = freePort();
  const first = await startManagerOn(dir.path, ["sleep 2; head -c 5000 /dev/zero"], ["--port", String(port)]);
  const { results } = first;
  await using _a = first.manager;
  await using runner = startKeeper(port, stateDir);
  await first.manager.waitFor(/Runner keeper joined/);
  await new Promise((r) => setTimeout(r, 500));
  first.manager.kill("SIGKILL");
  await first.manager.exit();
  await runner.waitFor(/Kept the result of/);
  // The manager comes back with a smaller limit than the kept output.
  const second = await startManagerAgain(first, ["--port", String(port), "--max-output", "1000"]);
  await using _b = second.manager;
  const ms = await second.manager.exit(60_000);
  assert.equal(ms.code, 1, second.manager.stderr);
  const [rec] = readRecords(results);
  assert.equal(rec.status, 125);
  assert.match(
    dec.decode(readOutput(results, rec)),
    /Output of 5000 bytes exceeds the manager's limit of 1000 bytes; it was not sent/,
  );
  await runner.waitFor(/Set aside the kept result of .*exceeds the manager's limit.* Its output is in .*set-aside/);
  const aside = [...Deno.readDirSync(join(stateDir, "set-aside"))].map((e) => e.name);
  const out = aside.find((n) => n.endsWith(".out"))!;
  assert.equal((await Deno.stat(join(stateDir, "set-aside", out))).size, 5000, "the output is kept, out of the way");
  assert.deepEqual([...Deno.readDirSync(join(stateDir, "pending"))], [], "nothing left to deliver");
});

Deno.test("Runner --persist: a job that ends over the manager's --max-output after a reconnect gets 125; the runner is not dropped", async () => {
  await using dir = await tempDir();
  const stateDir = join(dir.path, "state");
  const port = freePort();
  const first = await startManagerOn(dir.path, ["sleep 4; head -c 5000 /dev/zero"], ["--port", String(port)]);
  const { results } = first;
  await using _a = first.manager;
  await using runner = startKeeper(port, stateDir);
  await first.manager.waitFor(/Runner keeper joined/);
  await new Promise((r) => setTimeout(r, 500)); // the job runs, its assignment is durable
  first.manager.kill("SIGKILL");
  await first.manager.exit();
  const second = await startManagerAgain(first, ["--port", String(port), "--max-output", "1000"]);
  await using _b = second.manager;
  await second.manager.waitFor(/Runner keeper joined/);
  assert.doesNotMatch(runner.stderr, /Kept the result/, "the job was still running when the runner came back");
  const ms = await second.manager.exit(60_000);
  assert.equal(ms.code, 1, second.manager.stderr);
  assert.doesNotMatch(second.manager.stderr, /exceeds the limit/, "the runner was not dropped");
  const [rec] = readRecords(results);
  assert.equal(rec.status, 125);
  assert.match(
    dec.decode(readOutput(results, rec)),
    /Output of 5000 bytes exceeds the manager's limit of 1000 bytes; it was not sent \(set aside/,
  );
});
