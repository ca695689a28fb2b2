/** The runner's connection life, in process against scripted loopback peers. */

import assert from "node:assert/strict";
import { join } from "node:path";
import { Runner } from "../../runner/runner.ts";
import { RunnerState } from "../../runner/service/runner_state.ts";
import { LinePeer } from "../helpers/line_peer.ts";

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

/**
 * A manager that completes every opening and then drops the runner at its
 * first REZULTO (ERARO), and answers a PETO with FINO (with `dropAll`, drops
 * it at a PETO too). Notes when each connection came and what it was sent
 * first.
 */
function refusingManager(dropAll = false): { port: number; seen: { at: number; first: string }[] } & Disposable {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const seen: { at: number; first: string }[] = [];
  const serve = async (conn: Deno.TcpConn) => {
    const peer = new LinePeer(conn);
    try {
      const hello = (await peer.read())!;
      const holds = Number(hello.match(/holds=(\d+)/)?.[1] ?? 0);
      for (let i = 0; i < holds; i++) await peer.read();
      await peer.line("VICO/1 ok");
      await peer.read(); // SALUTON
      await peer.line("VERSIO 1.0");
      await peer.read(); // KOMPRENAS
      const first = (await peer.read()) ?? "";
      seen.push({ at: performance.now(), first });
      await peer.line(first.startsWith("REZULTO") || dropAll ? "ERARO not wanted here" : "FINO");
      await peer.rest(2000);
    } catch {
      // The runner went away.
    } finally {
      conn.close();
    }
  };
  (async () => {
    for await (const conn of listener) serve(conn);
  })().catch(() => {});
  return {
    port: listener.addr.port,
    seen,
    [Symbol.dispose]: () => listener.close(),
  };
}

async function until(what: string, ok: () => boolean, ms = 10_000): Promise<void> {
  const deadline = performance.now() + ms;
  while (!ok()) {
    if (performance.now() > deadline) throw new Error(`Timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

Deno.test("Runner --persist: a kept result refused 3 times in a row (across a restart) is set aside, then work goes on", async () => {
  using manager = refusingManager();
  const stateDir = await Deno.makeTempDir();
  const kept = await RunnerState.open(stateDir);
  const bytes = new TextEncoder().encode("kept output\n");
  await kept.store({ command: "echo kept" }, 0, { size: bytes.length, pipeTo: (sink) => sink(bytes) });
  kept.close();
  const options = {
    hostname: "127.0.0.1",
    port: manager.port,
    workers: 1,
    persist: true,
    stateDir,
    backoff: { initialMs: 100, maxMs: 1600 },
  };
  // Two refusals, then the runner restarts: the count is kept on disk.
  let runner = new Runner(options);
  let ending = runner.run();
  await until("two refusals", () => manager.seen.length >= 2);
  runner.stop();
  assert.equal((await ending).kind, "stopped");
  assert.equal(manager.seen.length, 2);
  runner = new Runner(options);
  ending = runner.run();
  await until("a connection after the third refusal", () => manager.seen.length >= 4);
  runner.stop();
  await ending;
  assert.deepEqual(manager.seen.map((s) => s.first.split(" ")[0]), ["REZULTO", "REZULTO", "REZULTO", "PETO"]);
  {
    using after = await RunnerState.open(stateDir);
    assert.deepEqual(await after.pending(), [], "nothing is kept for delivery any more");
  }
  const aside = [...Deno.readDirSync(join(stateDir, "set-aside"))].map((e) => e.name).sort();
  assert.deepEqual(aside.map((n) => n.replace(/^\d+/, "N")), ["N.failures", "N.json", "N.out", "N.reason"]);
  const base = join(stateDir, "set-aside", aside[0].replace(/\..*/, ""));
  assert.equal(await Deno.readTextFile(base + ".out"), "kept output\n");
  assert.match(await Deno.readTextFile(base + ".reason"), /refused or dropped 3 times in a row/);
  await Deno.remove(stateDir, { recursive: true });
});

Deno.test("Runner --persist: connections that do no useful work do not reset the backoff", async () => {
  using manager = refusingManager(true);
  const stateDir = await Deno.makeTempDir();
  const runner = new Runner({
    hostname: "127.0.0.1",
    port: manager.port,
    workers: 1,
    persist: true,
    stateDir,
    backoff: { initialMs: 100, maxMs: 1600 },
  });
  const ending = runner.run();
  await until("four connections", () => manager.seen.length >= 4);
  runner.stop();
  await ending;
  // Waits of 50-100, 100-200, then 200-400 ms (full jitter): the third is longer than any first wait.
  const gap = manager.seen[3].at - manager.seen[2].at;
  assert.ok(gap >= 190, `waited ${gap.toFixed(0)} ms before the fourth connection`);
  await Deno.remove(stateDir, { recursive: true });
});
