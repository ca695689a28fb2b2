/**
 * The real `runner.ts` process against scripted managers on loopback: the
 * client states of the draft, byte by byte. These managers speak only the
 * draft, so the runners are started with --plain (the vico extension and its
 * fallback are tested in extension_test.ts).
 */

import assert from "node:assert/strict";
import { startRunner } from "../helpers/entry_process.ts";
import { LineServer } from "../helpers/line_peer.ts";

Deno.test("runner: FINO to the first PETO; the last worker answers FINO ANKAU once, exit 0", async () => {
  using server = new LineServer();
  await using runner = startRunner(server.port, ["--plain", "--workers", "3", "--name", "n1"]);
  using m = await server.accept();
  assert.equal(await m.read(), "SALUTON; MI n1");
  await m.line("VERSIO 1.1");
  assert.equal(await m.read(), "KOMPRENAS");
  assert.equal(await m.read(), "PETO");
  await m.line("FINO");
  assert.deepEqual(await m.rest(), ["FINO ANKAU"]);
  assert.equal((await runner.exit()).code, 0, runner.stderr);
});

Deno.test("runner: workers still running after FINO report first, then FINO ANKAU", async () => {
  using server = new LineServer();
  await using runner = startRunner(server.port, ["--plain", "--workers", "2"]);
  using m = await server.accept();
  await m.read();
  await m.line("VERSIO 1.3");
  assert.equal(await m.read(), "KOMPRENAS");
  assert.equal(await m.read(), "PETO");
  await m.line("sleep 0.3; printf 'ab'");
  assert.equal(await m.read(), "PETO");
  await m.line("FINO");
  assert.equal(await m.read(), "REZULTO sleep 0.3; printf 'ab' 0 2");
  await m.line("PRETA");
  assert.deepEqual(await m.reader.readExact(2), new TextEncoder().encode("ab"));
  await m.line("RICEVIS");
  assert.deepEqual(await m.rest(), ["FINO ANKAU"]);
  assert.equal((await runner.exit()).code, 0, runner.stderr);
});

Deno.test("runner --workers 3: three jobs in flight before any result", async () => {
  using server = new LineServer();
  await using runner = startRunner(server.port, ["--plain", "--workers", "3"]);
  using m = await server.accept();
  await m.read();
  await m.line("VERSIO 1.1");
  await m.read();
  for (let i = 0; i < 3; i++) {
    assert.equal(await m.read(), "PETO");
    await m.line(`sleep 0.4; echo ${i}`);
  }
  // From here results and new requests interleave in lock order.
  const results = new Set<string>();
  let line: string | null;
  while ((line = await m.read()) !== "FINO ANKAU") {
    if (line === "PETO") {
      await m.line("FINO");
      continue;
    }
    assert.match(line!, /^REZULTO sleep 0\.4; echo \d 0 2$/);
    results.add(line!);
    await m.line("PRETA");
    await m.reader.readExact(2);
    await m.line("RICEVIS");
  }
  assert.equal(results.size, 3);
  assert.deepEqual(await m.rest(), []);
  assert.equal((await runner.exit()).code, 0);
});

Deno.test("runner: a version it does not speak ends it with exit 3", async () => {
  using server = new LineServer();
  await using runner = startRunner(server.port, ["--plain"]);
  using m = await server.accept();
  await m.read();
  await m.line("VERSIO 2.0");
  assert.deepEqual(await m.rest(), [], "nothing sent after a refused version");
  assert.equal((await runner.exit()).code, 3);
  assert.match(runner.stderr, /protocol version 2\.0/);
});

Deno.test("runner: ERARO from the manager is a disconnect with its reason, exit 1", async () => {
  using server = new LineServer();
  await using runner = startRunner(server.port, ["--plain"]);
  using m = await server.accept();
  await m.read();
  await m.line("VERSIO 1.1");
  await m.read();
  await m.read();
  await m.line("ERARO you are not welcome");
  assert.equal((await runner.exit()).code, 1);
  assert.match(runner.stderr, /Manager dropped this runner: you are not welcome/);
});

Deno.test("runner: losing the manager kills running jobs (no orphans) and exits 1", async () => {
  using server = new LineServer();
  await using runner = startRunner(server.port, ["--plain", "--workers", "2"]);
  const m = await server.accept();
  await m.read();
  await m.line("VERSIO 1.1");
  await m.read();
  await m.read();
  await m.line("sleep 299.117");
  await m.read();
  await m.line("sh -c 'sleep 298.117' & wait");
  await new Promise((r) => setTimeout(r, 300));
  const ps = () => new TextDecoder().decode(new Deno.Command("ps", { args: ["-eo", "args"] }).outputSync().stdout);
  assert.match(ps(), /sleep 299\.117/);
  const t0 = performance.now();
  m[Symbol.dispose]();
  assert.equal((await runner.exit()).code, 1);
  assert.ok(performance.now() - t0 < 5000, "noticed at once, not at the next job");
  assert.match(runner.stderr, /Manager closed the connection/);
  assert.doesNotMatch(ps(), /sleep 29[89]\.117/, "jobs and their children were killed");
});

Deno.test("runner: a line nobody asked for is a protocol error, exit 1", async () => {
  using server = new LineServer();
  await using runner = startRunner(server.port, ["--plain"]);
  using m = await server.accept();
  await m.read();
  await m.line("VERSIO 1.1");
  await m.read();
  await m.read();
  await m.line("sleep 5");
  await m.line("RICEVIS");
  assert.equal((await runner.exit()).code, 1);
  assert.match(runner.stderr, /Manager sent a line no worker asked for: "RICEVIS"/);
});

Deno.test("runner: cannot reach the manager, exit 1 with the address", async () => {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = l.addr.port;
  l.close();
  await using runner = startRunner(port, ["--plain"]);
  assert.equal((await runner.exit()).code, 1);
  assert.match(runner.stderr, new RegExp(`Cannot connect to the manager at 127\\.0\\.0\\.1:${port}`));
});
