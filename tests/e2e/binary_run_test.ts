/**
 * End to end with the binary protocol: a real manager serving task bundles
 * to real runners started with `--protocol binary`.
 */

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { startManagerOn, startManagerOnTasks, startNode, startRunner } from "../helpers/entry_process.ts";
import { byLine, readOutput, readRecords, tempDir } from "../helpers/journal.ts";

const dec = new TextDecoder();
const MB = 1024 * 1024;

Deno.test("binary: bundles with subdirectories come back byte-exact; a missing return is recorded missing", async () => {
  await using dir = await tempDir();
  await using work = await tempDir();
  await Deno.mkdir(join(dir.path, "in"));
  await Deno.writeFile(join(dir.path, "in", "data.bin"), Uint8Array.of(0, 1, 2, 255, 10, 13));
  await Deno.writeTextFile(
    join(dir.path, "tool.sh"),
    "#!/bin/sh\nmkdir -p res/deep\nod -An -tx1 in/x/data.bin > res/deep/hex.txt\necho tool ran\n",
  );
  const { manager, port, results } = await startManagerOnTasks(dir.path, [
    {
      name: "hexdump",
      files: [{ src: "in/data.bin", as: "in/x/data.bin" }, "tool.sh"],
      run: [{ program: "tool.sh", log: "logs/tool.log" }],
      return: ["res/deep/hex.txt", "logs/tool.log", "in/x/data.bin", "not/there.txt"],
    },
    { command: "printf 'plain \\000 job'" },
    {
      run: [{ command: "echo first > a.txt" }, { command: "cat a.txt; exit 4", log: "two.log" }],
      return: ["two.log", "a.txt"],
    },
  ]);
  await using _m = manager;
  await using node = startNode(port, ["--workers", "2", "--work-dir", work.path]);
  const [ms, ns] = await Promise.all([manager.exit(), node.exit()]);
  assert.equal(ns.code, 0, node.stderr);
  assert.equal(ms.code, 1, "the third task exits 4");
  const recs = byLine(readRecords(results));
  const hex = recs.get(1)!;
  assert.equal(hex.name, "hexdump");
  assert.equal(hex.status, 0);
  const files = Object.fromEntries(hex.files!.map((f) => [f.name, f]));
  assert.equal(Deno.readTextFileSync(join(results, files["res/deep/hex.txt"].path!)), " 00 01 02 ff 0a 0d\n");
  assert.equal(Deno.readTextFileSync(join(results, files["logs/tool.log"].path!)), "tool ran\n");
  assert.deepEqual(Deno.readFileSync(join(results, files["in/x/data.bin"].path!)), Uint8Array.of(0, 1, 2, 255, 10, 13));
  assert.equal(files["res/deep/hex.txt"].path, `files/${hex.key}/res/deep/hex.txt`, "under the job's folder, own name");
  assert.deepEqual(files["not/there.txt"], { name: "not/there.txt", path: null, size: 0, missing: true });
  for (const f of Object.values(files).filter((f) => f.path)) {
    assert.equal(f.sha256, createHash("sha256").update(Deno.readFileSync(join(results, f.path!))).digest("hex"));
  }
  assert.deepEqual(readOutput(results, recs.get(2)!), new TextEncoder().encode("plain \0 job"));
  assert.equal(recs.get(2)!.files, undefined, "a plain job is recorded as from a text runner");
  const inline = recs.get(3)!;
  assert.equal(inline.status, 4);
  assert.equal(Deno.readTextFileSync(join(results, inline.files!.find((f) => f.name === "two.log")!.path!)), "first\n");
  assert.deepEqual([...Deno.readDirSync(work.path)], [], "task directories removed");
});

Deno.test("binary: a 200 MB input and a 200 MB returned file stream through; memory stays bounded", async () => {
  await using dir = await tempDir();
  await using work = await tempDir();
  const input = join(dir.path, "big.bin");
  await new Deno.Command("/bin/sh", { args: ["-c", `head -c ${200 * MB} /dev/urandom > ${input}`] }).output();
  const inputSha = createHash("sha256");
  for await (const chunk of (await Deno.open(input)).readable) inputSha.update(chunk);
  const { manager, port, results } = await startManagerOnTasks(dir.path, [{
    files: [{ src: "big.bin", as: "in.bin" }],
    command: "cp in.bin out.bin; wc -c < in.bin",
    return: ["out.bin"],
  }]);
  await using _m = manager;
  await using node = startNode(port, ["--work-dir", work.path]);
  let managerPeak = 0, nodePeak = 0;
  const sampler = setInterval(() => {
    managerPeak = Math.max(managerPeak, manager.peakRss());
    nodePeak = Math.max(nodePeak, node.peakRss());
  }, 100);
  const [ms, ns] = await Promise.all([manager.exit(), node.exit()]);
  clearInterval(sampler);
  assert.equal(ns.code, 0, node.stderr);
  assert.equal(ms.code, 0, manager.stderr);
  const [rec] = readRecords(results);
  const out = rec.files!.find((f) => f.name === "out.bin")!;
  assert.equal(out.size, 200 * MB);
  assert.equal(out.sha256, inputSha.digest("hex"));
  assert.equal(dec.decode(readOutput(results, rec)).trim(), String(200 * MB));
  assert.ok(managerPeak > 0 && nodePeak > 0);
  assert.ok(managerPeak < 150 * MB, `manager peak RSS ${(managerPeak / MB).toFixed(0)} MB`);
  assert.ok(nodePeak < 150 * MB, `node peak RSS ${(nodePeak / MB).toFixed(0)} MB`);
});

Deno.test("binary: a task's timeout sends Stop; the run ends and its partial results come back", async () => {
  await using dir = await tempDir();
  await using work = await tempDir();
  const { manager, port, results } = await startManagerOnTasks(dir.path, [{
    command: "echo begun; echo partial > part.txt; sleep 284.1; echo never",
    return: ["part.txt"],
    timeout: "700ms",
  }]);
  await using _m = manager;
  await using node = startNode(port, ["--work-dir", work.path]);
  const [ms] = await Promise.all([manager.exit(), node.exit()]);
  assert.equal(ms.code, 1);
  const [rec] = readRecords(results);
  assert.equal(rec.status, 143);
  assert.equal(dec.decode(readOutput(results, rec)), "begun\n");
  assert.equal(Deno.readTextFileSync(join(results, rec.files![0].path!)), "partial\n");
  assert.match(manager.stderr, /ran out of its 0\.7s: sending Stop/);
});

Deno.test("binary: a gang of 3 nodes is staged, held at Wait and started together (< 50 ms apart)", async () => {
  await using dir = await tempDir();
  await using work = await tempDir();
  await Deno.writeFile(join(dir.path, "big.bin"), new Uint8Array(20 * MB));
  const { manager, port, results } = await startManagerOnTasks(dir.path, [
    { command: "echo solo" },
    { name: "gang", files: ["big.bin"], command: "date +%s%N", nodes: 3 },
    { command: "echo after" },
  ]);
  await using _m = manager;
  await using a = startNode(port, ["--workers", "2", "--work-dir", work.path]);
  await new Promise((r) => setTimeout(r, 500));
  await using b = startNode(port, ["--work-dir", work.path]);
  const [ms] = await Promise.all([manager.exit(), a.exit(), b.exit()]);
  assert.equal(ms.code, 0, manager.stderr);
  const recs = readRecords(results);
  assert.equal(recs.length, 3);
  const gang = recs.find((r) => r.name === "gang")!;
  assert.equal(gang.nodes!.length, 3);
  assert.deepEqual(gang.nodes!.map((n) => n.rank), [1, 2, 3]);
  const starts = gang.nodes!.map((n) => Date.parse(n.started));
  assert.ok(Math.max(...starts) - Math.min(...starts) < 50, `start times ${gang.nodes!.map((n) => n.started)}`);
  const logs = gang.files!.filter((f) => f.name === "vico-job.log");
  assert.deepEqual(logs.map((f) => f.node), [1, 2, 3]);
  assert.ok(logs.every((f) => f.path === `files/${gang.key}/node-${f.node}/vico-job.log`));
});

Deno.test("binary: nodes get only tasks whose modules they have; one that fits nothing is refused", async () => {
  await using dir = await tempDir();
  await using workA = await tempDir();
  await using workB = await tempDir();
  const { manager, port, results } = await startManagerOnTasks(dir.path, [
    ...Array.from({ length: 4 }, (_, i) => ({ command: `echo alpha ${i}; pwd`, modules: ["alpha"] })),
    ...Array.from({ length: 4 }, (_, i) => ({ command: `echo beta ${i}; pwd`, modules: ["beta", "sh"] })),
  ]);
  await using _m = manager;
  await using misfit = startNode(port, ["--modules", "gamma"]);
  assert.equal((await misfit.exit()).code, 3);
  assert.match(misfit.stderr, /no remaining task fits this node; they need modules alpha; modules beta,sh/);
  await using a = startNode(port, ["--modules", "alpha", "--work-dir", workA.path]);
  await using b = startNode(port, ["--modules", "sh,beta,extra", "--work-dir", workB.path]);
  const [ms, as, bs] = await Promise.all([manager.exit(), a.exit(), b.exit()]);
  assert.equal(ms.code, 0, manager.stderr);
  assert.equal(as.code, 0, a.stderr);
  assert.equal(bs.code, 0, b.stderr);
  for (const rec of readRecords(results)) {
    const out = dec.decode(readOutput(results, rec));
    const want = out.startsWith("alpha") ? workA.path : workB.path;
    assert.ok(out.includes(await Deno.realPath(want)), `${out} ran in the wrong node's work dir`);
  }
});

Deno.test("binary: a node killed with SIGKILL mid-task has its task redone by another", async () => {
  await using dir = await tempDir();
  await using work = await tempDir();
  const { manager, port, results } = await startManagerOnTasks(dir.path, [{
    command: "sleep 1; echo survived",
    return: [],
  }]);
  await using _m = manager;
  await using doomed = startNode(port, ["--work-dir", work.path]);
  await manager.waitFor(/Node 127\.0\.0\.1 joined/);
  await new Promise((r) => setTimeout(r, 400));
  doomed.kill("SIGKILL");
  await doomed.exit();
  await manager.waitFor(/Lost node .* in state Working/);
  await using rescuer = startNode(port, ["--work-dir", work.path]);
  const [ms] = await Promise.all([manager.exit(), rescuer.exit()]);
  assert.equal(ms.code, 0);
  const [rec] = readRecords(results);
  assert.equal(rec.attempt, 2);
  assert.equal(dec.decode(readOutput(results, rec)), "survived\n");
});

Deno.test("binary: a mixed fleet of text runners and binary nodes on one port drains one list", async () => {
  await using dir = await tempDir();
  await using work = await tempDir();
  const n = 200;
  const jobs = Array.from({ length: n }, (_, i) => `printf 'job %05d\\n' ${i}; sleep 0.0${i % 4}`);
  const { manager, port, results } = await startManagerOn(dir.path, jobs);
  await using _m = manager;
  await using text = startRunner(port, ["--workers", "2", "--name", "text-runner"]);
  await using node = startNode(port, ["--workers", "2", "--work-dir", work.path]);
  const [ms, ts, ns] = await Promise.all([manager.exit(), text.exit(), node.exit()]);
  assert.equal(ms.code, 0, manager.stderr);
  assert.equal(ts.code, 0, text.stderr);
  assert.equal(ns.code, 0, node.stderr);
  const recs = byLine(readRecords(results));
  assert.equal(recs.size, n);
  for (const [line, rec] of recs) {
    assert.equal(dec.decode(readOutput(results, rec)), `job ${String(line - 1).padStart(5, "0")}\n`);
  }
  const hosts = new Set([...recs.values()].map((r) => r.host));
  assert.deepEqual([...hosts].sort(), ["127.0.0.1", "text-runner"]);
});

Deno.test("binary: each run sees VICO_SEQ (its task's line, vico nodes) and VICO_SLOT (1..N on its runner)", async () => {
  await using dir = await tempDir();
  await using work = await tempDir();
  await using state = await tempDir();
  const task = { run: [{ command: 'echo "$VICO_SEQ $VICO_SLOT" > seen.txt' }], return: ["seen.txt"] };
  const { manager, port, results } = await startManagerOnTasks(dir.path, [task, task, task]);
  await using _m = manager;
  // A node speaks the vico extension (which carries seq=) with --persist or a secret.
  await using node = startNode(port, [
    "--workers",
    "2",
    "--work-dir",
    work.path,
    "--persist",
    "--state-dir",
    state.path,
  ]);
  const ms = await manager.exit();
  assert.equal(ms.code, 0, manager.stderr + node.stderr);
  const recs = byLine(readRecords(results));
  for (const line of [1, 2, 3]) {
    const seen = recs.get(line)!.files!.find((f) => f.name === "seen.txt")!;
    const [seq, slot] = Deno.readTextFileSync(join(results, seen.path!)).trim().split(" ");
    assert.equal(seq, String(line));
    assert.ok(slot === "1" || slot === "2", `slot ${slot}`);
  }
});
