import assert from "node:assert/strict";
import { BufferedReader } from "../../protocol/buffered_reader.ts";
import { ProtocolError, VicoError } from "../../core/errors.ts";
import { chunkedSource, CHUNKINGS, concat } from "../helpers/chunked_source.ts";

Deno.test({
  name: "BufferedReader.readLine() splits lines in every chunking and drops \\r before \\n",
  permissions: "none",
  async fn(t) {
    const input = concat("SALUTON; MI host\r\n", "PETO\n", "\n", "ŝanĝo ĉiu\n");
    for (const [name, chunking] of CHUNKINGS) {
      await t.step(name, async () => {
        const r = new BufferedReader(chunkedSource(input, chunking));
        assert.deepEqual(
          [await r.readLine(), await r.readLine(), await r.readLine(), await r.readLine(), await r.readLine()],
          ["SALUTON; MI host", "PETO", "", "ŝanĝo ĉiu", null],
        );
      });
    }
  },
});

Deno.test({
  name: "BufferedReader.readLine() refuses a line over the limit before reading it all",
  permissions: "none",
  async fn() {
    let served = 0;
    const r = new BufferedReader({
      read(p) {
        p.fill(0x41);
        served += p.length;
        return Promise.resolve(p.length);
      },
    }, { maxLineBytes: 1000, bufferSize: 64 });
    await assert.rejects(
      r.readLine(),
      (e) => e instanceof ProtocolError && /exceeds the limit of 1000/.test(e.message),
    );
    assert.ok(served < 4096, `read ${served} bytes of an endless line`);
  },
});

Deno.test({
  name: "BufferedReader.readLine() accepts a line of exactly the limit, with or without \\r",
  permissions: "none",
  async fn() {
    const line = "x".repeat(100);
    for (const term of ["\n", "\r\n"]) {
      const r = new BufferedReader(chunkedSource(concat(line, term), 7), { maxLineBytes: 100, bufferSize: 16 });
      assert.equal(await r.readLine(), line);
    }
    const r = new BufferedReader(chunkedSource(concat(line, "y\n"), 7), { maxLineBytes: 100, bufferSize: 16 });
    await assert.rejects(r.readLine(), ProtocolError);
  },
});

Deno.test({
  name: "BufferedReader.readLine() rejects invalid UTF-8 and a stream cut mid-line",
  permissions: "none",
  async fn() {
    const bad = new BufferedReader(chunkedSource(concat(new Uint8Array([0x66, 0xff, 0x0a])), 1));
    await assert.rejects(bad.readLine(), (e) => e instanceof ProtocolError && /UTF-8/.test(e.message));
    const cut = new BufferedReader(chunkedSource(concat("PET"), 1));
    await assert.rejects(cut.readLine(), (e) => e instanceof ProtocolError && /middle of a line/.test(e.message));
  },
});

Deno.test({
  name: "BufferedReader.bufferedLine() takes only whole lines already read, as readLine() would return them",
  permissions: "none",
  async fn() {
    // The first read ends in the middle of the third line.
    const r = new BufferedReader(chunkedSource(concat("PETO\r\nŝanĝo\nREZ", "ULTO x 0 0\n"), [17, 1 << 20]));
    assert.equal(r.bufferedLine(), undefined); // nothing read yet
    assert.equal(await r.readLine(), "PETO");
    assert.equal(r.bufferedLine(), "ŝanĝo");
    assert.equal(r.bufferedLine(), undefined); // "REZ" is not a whole line: left in place
    assert.equal(await r.readLine(), "REZULTO x 0 0");
    assert.equal(await r.readLine(), null);
    const bad = new BufferedReader(chunkedSource(concat("ok\n", new Uint8Array([0x66, 0xff, 0x0a])), 1 << 20));
    assert.equal(await bad.readLine(), "ok");
    assert.throws(() => bad.bufferedLine(), (e) => e instanceof ProtocolError && /UTF-8/.test(e.message));
    const long = new BufferedReader(chunkedSource(concat("a\n", "x".repeat(20), "\n"), 1 << 20), { maxLineBytes: 10 });
    assert.equal(await long.readLine(), "a");
    assert.throws(() => long.bufferedLine(), (e) => e instanceof ProtocolError && /exceeds the limit/.test(e.message));
  },
});

Deno.test({
  name: "BufferedReader.readLine() decodes ASCII and non-ASCII lines alike, short and long",
  permissions: "none",
  async fn() {
    const lines = ["", "PETO", "x".repeat(256), "y".repeat(257), "é", "a".repeat(255) + "é", "\u0000\u007f"];
    const r = new BufferedReader(chunkedSource(concat(...lines.map((l) => l + "\n")), 5));
    for (const l of lines) assert.equal(await r.readLine(), l);
  },
});

Deno.test({
  name: "BufferedReader reads big-endian integers and exact bytes across chunk borders",
  permissions: "none",
  async fn(t) {
    const input = concat(
      new Uint8Array([0x13, 0x00, 0x05]),
      "a/b.c",
      new Uint8Array([0xff, 0xff, 0xff, 0xff, 0x12, 0x34]),
      "tail\n",
    );
    for (const [name, chunking] of CHUNKINGS) {
      await t.step(name, async () => {
        const r = new BufferedReader(chunkedSource(input, chunking));
        assert.equal(await r.readU8(), 0x13);
        const len = await r.readU16();
        assert.equal(len, 5);
        assert.equal(new TextDecoder().decode(await r.readExact(len)), "a/b.c");
        assert.equal(await r.readU32(), 0xffffffff);
        assert.equal(await r.readU16(), 0x1234);
        assert.equal(await r.peekU8(), "t".charCodeAt(0));
        assert.equal(await r.readLine(), "tail");
        assert.equal(await r.peekU8(), null);
      });
    }
  },
});

Deno.test({
  name: "BufferedReader.pipeExact() streams exactly n bytes and leaves the rest buffered",
  permissions: "none",
  async fn(t) {
    const payload = new Uint8Array(300_000).map((_, i) => (i * 31) & 0xff);
    const input = concat("REZULTO x 0 300000\n", payload, "PETO\n");
    for (const [name, chunking] of [...CHUNKINGS.slice(2), ["large reads", 65536] as const]) {
      await t.step(name, async () => {
        const r = new BufferedReader(chunkedSource(input, chunking), { bufferSize: 1024, pipeChunkBytes: 4096 });
        assert.equal(await r.readLine(), "REZULTO x 0 300000");
        const got: Uint8Array[] = [];
        let biggest = 0;
        await r.pipeExact(payload.length, (c) => {
          biggest = Math.max(biggest, c.length);
          got.push(c.slice());
        });
        assert.deepEqual(concat(...got), payload);
        assert.ok(biggest <= 4096, `chunk of ${biggest} bytes`);
        assert.equal(await r.readLine(), "PETO");
      });
    }
  },
});

Deno.test({
  name: "BufferedReader.pipeExact() and readExact() reject a stream that ends early",
  permissions: "none",
  async fn() {
    const r = new BufferedReader(chunkedSource(concat("abc"), 1));
    await assert.rejects(r.pipeExact(10, () => {}), (e) => e instanceof VicoError && e.code === "CONNECTION_CLOSED");
    const r2 = new BufferedReader(chunkedSource(concat("ab"), 1));
    await assert.rejects(r2.readExact(3), (e) => e instanceof VicoError && e.code === "CONNECTION_CLOSED");
    const r3 = new BufferedReader(chunkedSource(concat(new Uint8Array([1, 2])), 1));
    await assert.rejects(r3.readU32(), (e) => e instanceof VicoError && e.code === "CONNECTION_CLOSED");
  },
});

Deno.test({
  name: "BufferedReader.peekU8() may be pending while a read starts: both share one source read",
  permissions: "none",
  async fn() {
    let reads = 0;
    let release!: (n: number | null) => void;
    const r = new BufferedReader({
      read(p) {
        reads++;
        if (reads > 1) return Promise.resolve(null);
        return new Promise((resolve) => {
          release = (n) => {
            if (n !== null) p.set(Uint8Array.of(0x01, 0x00, 0x00, 0x00, 0x02, 0x68, 0x69).subarray(0, n));
            resolve(n);
          };
        });
      },
    });
    const peek = r.peekU8();
    const first = r.readU8();
    release(7);
    assert.equal(await peek, 0x01);
    assert.equal(await first, 0x01);
    assert.equal(await r.readU32(), 2);
    assert.equal(new TextDecoder().decode(await r.readExact(2)), "hi");
    assert.equal(reads, 1);
  },
});
