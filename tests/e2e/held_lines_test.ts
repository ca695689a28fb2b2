/**
 * Held lines cost O(1) each (issue 13, item 16): a hello announcing the
 * most held lines allowed, against a long list, is answered at once, and
 * honest runners are served meanwhile. Before, each `task …` line made the
 * manager rehash the whole list (18-29 s for 1,000 lines and 20,000 jobs).
 */

import assert from "node:assert/strict";
import { readRecords, tempDir } from "../helpers/journal.ts";
import { startManagerOn, startRunner } from "../helpers/entry_process.ts";
import { LinePeer } from "../helpers/line_peer.ts";
import { MAX_HOLDS } from "../../protocol/vico_extension.ts";

Deno.test("manager: a hello with 10,000 held lines against 20,000 jobs is answered at once; none is taken back", async () => {
  await using dir = await tempDir();
  const jobs = Array.from({ length: 20_000 }, (_, i) => `true ${i}`);
  const { manager, port, results } = await startManagerOn(dir.path, jobs);
  await using _m = manager;
  for (const proto of ["binary", "text"] as const) {
    using peer = await LinePeer.connect(port);
    const held = Array.from(
      { length: MAX_HOLDS },
      (_, i) =>
        proto === "binary"
          ? `task run=${"0".repeat(32)} key=${i.toString(16).padStart(16, "0")}-1 attempt=1`
          : `run=${"0".repeat(32)} key=${i.toString(16).padStart(16, "0")}-1 attempt=1 true ${i}`,
    );
    const t0 = performance.now();
    await peer.send(`VICO/1 hello proto=${proto} id=attacker want=pulse,tag holds=${MAX_HOLDS}\n${held.join("\n")}\n`);
    const answer = await peer.read(10_000);
    const took = performance.now() - t0;
    assert.match(answer ?? "", /^VICO\/1 ok /, `answered (${proto})`);
    if (proto === "binary") assert.match(answer!, / resume=0\b/, "the task it names is not one this manager issued");
    else assert.match(answer!, new RegExp(` drop=0,1,2,.*,${MAX_HOLDS - 1}\\b`), "no held line is taken back");
    assert.ok(took < 3000, `${MAX_HOLDS} held lines took ${took.toFixed(0)} ms (${proto})`);
  }
  // A text runner joining with held `task …` lines (the old code rehashed
  // the whole list for each at join): the manager stays responsive.
  using joiner = await LinePeer.connect(port);
  const tasks = Array.from({ length: MAX_HOLDS }, (_, i) => `task ${i}`);
  await joiner.send(`VICO/1 hello proto=text id=joiner holds=${MAX_HOLDS}\n${tasks.join("\n")}\n`);
  assert.match((await joiner.read()) ?? "", /^VICO\/1 ok /);
  await joiner.send("SALUTON; MI joiner\n");
  assert.match((await joiner.read()) ?? "", /^VERSIO /);
  await joiner.send("KOMPRENAS\n");
  const t1 = performance.now();
  using probe = await LinePeer.connect(port);
  await probe.send("VICO/1 hello proto=text\n");
  assert.match((await probe.read(30_000)) ?? "", /^VICO\/1 ok /);
  const stalled = performance.now() - t1;
  assert.ok(
    stalled < 2000,
    `the next hello waited ${stalled.toFixed(0)} ms behind a join with ${MAX_HOLDS} held lines`,
  );
  // An honest runner is served meanwhile.
  await using runner = startRunner(port, ["--workers", "2"]);
  const deadline = performance.now() + 10_000;
  while (performance.now() < deadline && readRecords(results).length < 10) await new Promise((r) => setTimeout(r, 50));
  assert.ok(readRecords(results).length >= 10, "the honest runner's jobs are recorded");
  manager.kill("SIGINT");
  await Promise.all([manager.exit(30_000), runner.exit(30_000)]);
});
