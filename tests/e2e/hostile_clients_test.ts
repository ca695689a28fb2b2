/**
 * Hostile and broken text clients against a real manager process: each one
 * is dropped with a reason, the jobs it held go back to the queue, and an
 * honest runner beside them finishes every job exactly once.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { EntryProcess, freePort, startManagerOn, startRunner } from "../helpers/entry_process.ts";
import { readOutput, readRecords, tempDir } from "../helpers/journal.ts";
import { LinePeer } from "../helpers/line_peer.ts";

const dec = new TextDecoder();

Deno.test("manager drops hostile clients with a reason while an honest runner finishes every job", async () => {
  await using dir = await tempDir();
  const jobs = Array.from({ length: 10 }, (_, i) => `echo job-${i}`);
  const { manager, port, results } = await startManagerOn(dir.path, jobs);
  await using _m = manager;

  // 1. A bad hail: answered with ERARO, then closed.
  {
    using p = await LinePeer.connect(port);
    await p.line("SALUTON MI no-semicolon");
    const rest = await p.rest();
    assert.equal(rest.length, 1);
    assert.match(rest[0], /^ERARO Expected the hail|^ERARO Unknown runner message/);
  }
  // 2. Garbage bytes: no protocol starts with them; closed without a word.
  {
    using p = await LinePeer.connect(port);
    await p.send(new Uint8Array([0xff, 0x00, 0x13, 0x37, 0x0a]));
    assert.deepEqual(await p.rest(), []);
  }
  // 3. Starts like a hail, then garbage bytes: ERARO.
  {
    using p = await LinePeer.connect(port);
    await p.send(new Uint8Array([0x53, 0xff, 0xfe, 0x0a]));
    const rest = await p.rest();
    assert.match(rest[0] ?? "", /^ERARO Line is not valid UTF-8/);
  }
  // 4. REZULTO for a job it never got: ERARO, closed.
  {
    using p = await LinePeer.connect(port);
    assert.equal(await p.hail("liar"), "VERSIO 1.1");
    await p.line("REZULTO rm -rf / 0 0");
    const rest = await p.rest();
    assert.match(rest[0] ?? "", /^ERARO REZULTO for a job this runner does not hold/);
  }
  // 5. Takes a job, then announces an absurd size: ERARO; its job goes back.
  {
    using p = await LinePeer.connect(port);
    await p.hail("greedy");
    await p.line("PETO");
    const job = await p.read();
    assert.equal(job, "echo job-0");
    await p.line(`REZULTO ${job} 0 999999999999999`);
    const rest = await p.rest();
    assert.match(rest[0] ?? "", /^ERARO Output of 999999999999999 bytes exceeds the limit/);
  }
  // 6. Takes a job, sends part of its output, vanishes: the job goes back.
  {
    using p = await LinePeer.connect(port);
    await p.hail("flaky");
    await p.line("PETO");
    const job = await p.read();
    await p.line(`REZULTO ${job} 0 100`);
    assert.equal(await p.read(), "PRETA");
    await p.send("only ten b");
  }
  // 7. An endless line: cut off at the line limit.
  {
    using p = await LinePeer.connect(port);
    await p.hail("chatty");
    await p.send("PETO" + "O".repeat(100_000)).catch(() => {});
    const rest = await p.rest();
    assert.match(rest[0] ?? "", /^ERARO Line exceeds the limit of 65536 bytes/);
  }
  // 8. Silent after connecting: the handshake never completes, nothing is held.
  using silent = await LinePeer.connect(port);

  await using honest = startRunner(port, ["--workers", "2", "--name", "honest"]);
  const [ms, rs] = await Promise.all([manager.exit(), honest.exit()]);
  assert.equal(rs.code, 0, honest.stderr);
  assert.equal(ms.code, 0, manager.stderr);
  const records = readRecords(results);
  assert.equal(records.length, 10, "every job recorded exactly once");
  assert.equal(new Set(records.map((r) => r.key)).size, 10);
  for (const r of records) {
    assert.equal(r.host, "honest");
    assert.equal(dec.decode(readOutput(results, r)), `${r.command.slice(5)}\n`);
  }
  assert.match(manager.stderr, /Dropping runner greedy .* go back to the queue/);
  assert.match(manager.stderr, /Lost runner flaky .*Connection closed after 10 of 100 expected bytes/);
  void silent;
});

Deno.test("ManagerTextSession: runners that join and leave are logged at a bounded rate, and not at all under -q", async () => {
  await using dir = await tempDir();
  const list = join(dir.path, "jobs.txt");
  await Deno.writeTextFile(list, "echo one\necho two\n");
  const results = join(dir.path, "res");
  // Under -q the manager logs no "Serving" line to wait for: a known port, polled until it answers.
  const port = freePort();
  await using manager = EntryProcess.spawn("manager.ts", [
    ...["--jobs", list, "--results", results, "--port", String(port), "-q"],
  ]);
  let ready = false;
  for (let i = 0; i < 200 && !ready; i++) {
    try {
      (await Deno.connect({ hostname: "127.0.0.1", port })).close();
      ready = true;
    } catch {
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  // 150 runners join and hang up at once; 50 join and lie about a result.
  for (let i = 0; i < 200; i++) {
    using p = await LinePeer.connect(port);
    assert.equal(await p.hail(`churn-${i}`), "VERSIO 1.1");
    if (i % 4 === 3) {
      await p.line("REZULTO echo never-given 0 0");
      await p.rest();
    }
  }
  await using honest = startRunner(port, ["--workers", "1", "--name", "honest"]);
  const [ms, rs] = await Promise.all([manager.exit(), honest.exit()]);
  assert.equal(rs.code, 0, honest.stderr);
  assert.equal(ms.code, 0, manager.stderr);
  assert.equal(readRecords(results).length, 2);
  const lines = manager.stderr.split("\n").filter((l) => l.length > 0);
  assert.ok(lines.length < 40, `${lines.length} log lines for 200 runners:\n${lines.slice(0, 10).join("\n")}`);
  assert.doesNotMatch(manager.stderr, /Lost runner churn-/, "a runner that leaves holding nothing is not a warning");
  assert.match(manager.stderr, /Dropping runner churn-3 .*REZULTO for a job this runner does not hold/);
});
