/** The runner's connection life, in process against scripted loopback peers. */

import assert from "node:assert/strict";
import { Runner } from "../../runner/runner.ts";

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

Deno.test("Runner handshakeTimeoutMs: a silent endpoint is a failed connection; --persist backs off and tries again", async () => {
  using hole = blackHole();
  const stateDir = await Deno.makeTempDir();
  const runner = new Runner({
    hostname: "127.0.0.1",
    port: hole.port,
    workers: 1,
    persist: true,
    stateDir,
    handshakeTimeoutMs: 150,
    backoff: { initialMs: 50, maxMs: 100 },
  });
  const problems: string[] = [];
  const ending = runner.run();
  for (let i = 0; i < 100 && hole.accepted() < 3; i++) await new Promise((r) => setTimeout(r, 50));
  assert.ok(hole.accepted() >= 3, `connected ${hole.accepted()} time(s)`);
  problems.push(runner.activity.problem ?? "");
  runner.stop();
  assert.equal((await ending).kind, "stopped");
  assert.match(problems[0], /did not complete the handshake within 0.15s/);
  await Deno.remove(stateDir, { recursive: true });
});

Deno.test("Runner handshakeTimeoutMs: without --persist a silent endpoint ends the runner as failed, with the reason", async () => {
  using hole = blackHole();
  const end = await new Runner({ hostname: "127.0.0.1", port: hole.port, workers: 2, handshakeTimeoutMs: 150 }).run();
  assert.equal(end.kind, "failed");
  assert.match(end.kind === "failed" ? end.reason : "", /accepted the connection but did not complete the handshake/);
});
