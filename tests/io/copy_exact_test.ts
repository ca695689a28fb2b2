import assert from "node:assert/strict";
import { copyExact } from "../../io/copy_exact.ts";

/** A file-like source holding `bytes`, read at most `step` bytes at a time. */
function source(bytes: Uint8Array, step: number) {
  let at = 0;
  return {
    read(p: Uint8Array): Promise<number | null> {
      if (at >= bytes.length) return Promise.resolve(null);
      const n = Math.min(p.length, step, bytes.length - at);
      p.set(bytes.subarray(at, at + n));
      at += n;
      return Promise.resolve(n);
    },
  };
}

Deno.test({
  name: "copyExact() hands exactly size bytes on in order, in chunks no bigger than chunkBytes, and stops there",
  permissions: "none",
  async fn() {
    const bytes = Uint8Array.from({ length: 100 }, (_, i) => i);
    const chunks: number[][] = [];
    await copyExact(source(bytes, 7), 60, (c) => Promise.resolve(void chunks.push([...c])), {
      chunkBytes: 16,
      shortMessage: "short",
    });
    assert.deepEqual(chunks.flat(), [...bytes.subarray(0, 60)]);
    assert.ok(chunks.every((c) => c.length <= 16));
  },
});

Deno.test({
  name: "copyExact() throws shortMessage when the file ends first, and copies nothing for size 0",
  permissions: "none",
  async fn() {
    await assert.rejects(
      () => copyExact(source(new Uint8Array(5), 5), 6, () => Promise.resolve(), { shortMessage: "x shrank" }),
      { message: "x shrank" },
    );
    let called = false;
    await copyExact(source(new Uint8Array(0), 1), 0, () => Promise.resolve(void (called = true)), {
      shortMessage: "never",
    });
    assert.equal(called, false);
  },
});
