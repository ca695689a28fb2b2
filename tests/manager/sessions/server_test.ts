/**
 * The server's front door in process, over real loopback TCP, with sessions
 * that only read lines until `KOMPRENAS` (which completes the handshake) and
 * answer `OK`: the handshake cap and the handshake budget.
 */

import assert from "node:assert/strict";
import { DEFAULT_LIMITS } from "../../../core/limits.ts";
import { Server, type ServerOptions, type SessionFactory } from "../../../manager/sessions/server.ts";
import { listenTcp } from "../../../transport/conn_transport.ts";
import { MemoryListener, type MemoryTransport } from "../../../transport/memory_transport.ts";
import { LinePeer } from "../../helpers/line_peer.ts";

const enc = new TextEncoder();

/** Sessions that complete the handshake on `KOMPRENAS`, answer `OK`, and end when the peer closes. */
const lineSessions: SessionFactory = {
  text(transport, reader, handshake) {
    return {
      async run() {
        try {
          while (true) {
            const line = await reader.readLine();
            if (line === null) return;
            if (line === "KOMPRENAS") {
              handshake.done();
              await transport.write(enc.encode("OK\n"));
            }
          }
        } catch {
          // Closed (evicted, over budget): the session ends.
        } finally {
          transport.close();
        }
      },
      close() {
        transport.close();
      },
    };
  },
};

/** A server on a free loopback port; disposing it closes everything. */
function serve(options: Partial<ServerOptions>): AsyncDisposable & { port: number } {
  const listener = listenTcp("127.0.0.1", 0);
  const server = new Server(listener, lineSessions, {
    limits: { ...DEFAULT_LIMITS },
    handshakeTimeoutMs: 10_000,
    maxHandshaking: 2,
    ...options,
  });
  const serving = server.serve();
  return {
    port: listener.address.port,
    async [Symbol.asyncDispose]() {
      await server.drain(0);
      await serving;
    },
  };
}

/** Whether the manager closed `peer` within `ms` (a read ends or fails). */
async function closedWithin(peer: LinePeer, ms: number): Promise<boolean> {
  try {
    return (await peer.read(ms)) === null;
  } catch (err) {
    return !(err instanceof Error && /Timed out/.test(err.message));
  }
}

Deno.test("Server at its handshake cap holds new connections back and closes only stalled handshakes", async () => {
  await using server = serve({ handshakeStallMs: 1000 });
  // Two handshakes fill the cap: one keeps sending, one has gone silent.
  using trickler = await LinePeer.connect(server.port);
  await trickler.send("S");
  const trickle = setInterval(() => trickler.send("x").catch(() => {}), 100);
  try {
    using silent = await LinePeer.connect(server.port);
    await silent.send("S");
    await new Promise((r) => setTimeout(r, 100));
    // A third connects (the kernel queues it) and sends its whole handshake.
    using third = await LinePeer.connect(server.port);
    await third.line("SALUTON; MI third");
    await third.line("KOMPRENAS");
    const t0 = performance.now();
    assert.equal(await third.read(8000), "OK", "served once the silent one stalled");
    assert.ok(performance.now() - t0 >= 500, "it waited for room instead of evicting anyone");
    assert.ok(await closedWithin(silent, 2000), "the stalled handshake was closed");
    assert.equal(await closedWithin(trickler, 1000), false, "the one that keeps sending was left alone");
  } finally {
    clearInterval(trickle);
  }
});

Deno.test("Server charges every handshake byte to one budget and closes the biggest holder when it is over", async () => {
  await using server = serve({ maxHandshaking: 8, handshakeBudgetBytes: 10_000 });
  // One handshake sends 8,000 bytes of held-job-like lines and stops.
  using greedy = await LinePeer.connect(server.port);
  await greedy.send("S" + ("x".repeat(999) + "\n").repeat(8));
  await new Promise((r) => setTimeout(r, 200));
  // An honest one with a long hail tips the total over: the greedy one goes.
  using honest = await LinePeer.connect(server.port);
  await honest.line("SALUTON; MI " + "h".repeat(3000));
  await honest.line("KOMPRENAS");
  assert.equal(await honest.read(5000), "OK");
  assert.ok(await closedWithin(greedy, 2000), "the biggest holder was closed");
  // Its share was given back: more honest handshakes fit.
  for (let i = 0; i < 5; i++) {
    using next = await LinePeer.connect(server.port);
    await next.line("SALUTON; MI " + "n".repeat(3000));
    await next.line("KOMPRENAS");
    assert.equal(await next.read(5000), "OK");
  }
});

Deno.test({
  name:
    "Server over a MemoryListener hands a text peer to the text session and closes one that speaks neither protocol",
  permissions: "none",
  async fn() {
    const listener = new MemoryListener();
    const server = new Server(listener, lineSessions, {
      limits: { ...DEFAULT_LIMITS },
      handshakeTimeoutMs: 10_000,
      maxHandshaking: 2,
    });
    const serving = server.serve();
    const readAll = async (t: MemoryTransport) => {
      const buf = new Uint8Array(64);
      let text = "";
      while (true) {
        const n = await t.read(buf);
        if (n === null) return text;
        text += new TextDecoder().decode(buf.subarray(0, n));
        if (text.endsWith("\n")) return text;
      }
    };
    const runner = listener.connect();
    await runner.write(enc.encode("SALUTON; MI memory\nKOMPRENAS\n"));
    assert.equal(await readAll(runner), "OK\n");
    const stranger = listener.connect();
    await stranger.write(enc.encode("GET / HTTP/1.1\r\n\r\n"));
    assert.equal(await readAll(stranger), "", "closed without a word");
    runner.close();
    await server.drain(0);
    await serving;
  },
});
