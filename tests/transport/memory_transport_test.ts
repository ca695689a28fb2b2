import assert from "node:assert/strict";
import { MemoryListener, memoryTransportPair } from "../../transport/memory_transport.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

Deno.test({
  name: "memoryTransportPair() carries bytes both ways in order, split to the reader's buffer",
  permissions: "none",
  async fn() {
    const [a, b] = memoryTransportPair();
    await a.write(enc.encode("hello "));
    await a.write(enc.encode("world"));
    const buf = new Uint8Array(4);
    let got = "";
    while (got.length < 11) got += dec.decode(buf.subarray(0, (await b.read(buf))!));
    assert.equal(got, "hello world");
    await b.write(enc.encode("ok"));
    assert.equal(dec.decode(buf.subarray(0, (await a.read(buf))!)), "ok");
    a.close();
    b.close();
  },
});

Deno.test({
  name: "MemoryTransport.close() ends both directions: reads see the end, writes reject",
  permissions: "none",
  async fn() {
    const [a, b] = memoryTransportPair();
    const pending = b.read(new Uint8Array(8));
    a.close();
    assert.equal(await pending, null, "a read waiting on the other end sees the end of stream");
    assert.equal(await a.read(new Uint8Array(8)), null);
    await assert.rejects(() => b.write(enc.encode("late")), Deno.errors.BrokenPipe);
    assert.equal(a.closed && b.closed, true);
  },
});

Deno.test({
  name: "MemoryListener yields the server end of each connect() in order, and ends when closed",
  permissions: "none",
  async fn() {
    const listener = new MemoryListener();
    const c1 = listener.connect();
    const c2 = listener.connect();
    const accepted: string[] = [];
    const accepting = (async () => {
      for await (const t of listener) {
        accepted.push(t.peer);
        await t.write(enc.encode(t.peer));
        t.close();
      }
    })();
    const buf = new Uint8Array(64);
    assert.equal(dec.decode(buf.subarray(0, (await c1.read(buf))!)), "memory:client-1");
    assert.equal(dec.decode(buf.subarray(0, (await c2.read(buf))!)), "memory:client-2");
    listener.close();
    await accepting;
    assert.deepEqual(accepted, ["memory:client-1", "memory:client-2"]);
    assert.throws(() => listener.connect(), Deno.errors.ConnectionRefused);
  },
});

Deno.test({
  name: "MemoryTransport.write() waits while the other end holds a high-water mark unread (bounded memory)",
  permissions: "none",
  async fn() {
    const [a, b] = memoryTransportPair({ highWaterBytes: 8 });
    await a.write(enc.encode("12345678"));
    let done = false;
    const second = a.write(enc.encode("9")).then(() => (done = true));
    await new Promise((r) => setTimeout(r, 10));
    assert.equal(done, false, "a write past the high-water mark waits for the reader");
    const buf = new Uint8Array(4);
    assert.equal(dec.decode(buf.subarray(0, (await b.read(buf))!)), "1234");
    await second;
    assert.equal(done, true, "the reader taking bytes lets it through");
    const third = a.write(enc.encode("abcdefgh"));
    a.close();
    await assert.rejects(third, Deno.errors.BrokenPipe, "a write waiting when the transport closes rejects");
  },
});
