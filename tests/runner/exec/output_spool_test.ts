import assert from "node:assert/strict";
import { OutputSpool, SpoolFiles } from "../../../runner/exec/output_spool.ts";

async function collect(spool: OutputSpool): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  await spool.pipeTo((c) => {
    parts.push(c.slice());
    return Promise.resolve();
  }, 1000);
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

Deno.test("OutputSpool keeps small output in memory and spills large output to disk", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const small = new OutputSpool({ dir, memoryLimit: 100 });
    await small.write(new Uint8Array([1, 2, 3]));
    assert.ok(!small.onDisk);
    assert.deepEqual(await collect(small), new Uint8Array([1, 2, 3]));
    await small.dispose();

    const big = new OutputSpool({ dir, memoryLimit: 100 });
    const data = new Uint8Array(5000).map((_, i) => i & 0xff);
    const buf = new Uint8Array(64);
    for (let i = 0; i < data.length; i += 64) {
      buf.set(data.subarray(i, i + 64));
      await big.write(buf.subarray(0, Math.min(64, data.length - i))); // the caller reuses its buffer
    }
    assert.ok(big.onDisk);
    assert.equal(big.size, 5000);
    assert.deepEqual(await collect(big), data);
    await big.dispose();
    assert.deepEqual([...Deno.readDirSync(dir)], [], "temporary file removed");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("OutputSpool refuses output beyond its limit", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const spool = new OutputSpool({ dir, memoryLimit: 10, maxBytes: 20 });
    await spool.write(new Uint8Array(15));
    await assert.rejects(spool.write(new Uint8Array(10)), RangeError);
    await spool.dispose();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("OutputSpool.adopt() sends the reserved file the job wrote, its size as given, and removes it", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const spool = new OutputSpool({ dir });
    const path = spool.reserveFile();
    await Deno.writeFile(path, new Uint8Array([1, 0, 255, 3, 9]));
    spool.adopt(4);
    assert.equal(spool.size, 4);
    assert.equal(spool.onDisk, true);
    await assert.rejects(spool.write(new Uint8Array([1])));
    const sent: number[] = [];
    await spool.pipeTo((chunk) => Promise.resolve(void sent.push(...chunk)), 3);
    assert.deepEqual(sent, [1, 0, 255, 3]);
    await spool.dispose();
    await assert.rejects(Deno.stat(path), Deno.errors.NotFound);
    const empty = new OutputSpool({ dir });
    empty.reserveFile();
    empty.adopt(0);
    await empty.pipeTo(() => Promise.reject(new Error("no chunk expected")));
    await empty.dispose();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("SpoolFiles takes back a small file nothing holds open, and removes one still held or large", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const files = new SpoolFiles(dir);
    const first = new OutputSpool({ dir, files });
    const path = first.reserveFile();
    await Deno.writeFile(path, new Uint8Array([1, 2, 3]));
    first.adopt(3);
    await first.dispose();
    // Kept for the next job, which gets the same file under a fresh name (nothing is at the old path any more).
    await assert.rejects(Deno.stat(path), Deno.errors.NotFound);
    const second = new OutputSpool({ dir, files });
    const reused = second.reserveFile();
    assert.notEqual(reused, path);
    assert.equal((await Deno.stat(reused)).size, 3);
    // Still open for writing elsewhere (as by a process that left its job's group): removed, not reused.
    using held = await Deno.open(reused, { write: true });
    second.adopt(0);
    await second.dispose();
    assert.deepEqual([...Deno.readDirSync(dir)], [], "removed, under either name");
    held.close();
    const big = new OutputSpool({ dir, files });
    const bigPath = big.reserveFile();
    assert.notEqual(bigPath, path);
    await Deno.writeFile(bigPath, new Uint8Array(128 * 1024));
    big.adopt(128 * 1024);
    await big.dispose();
    await assert.rejects(Deno.stat(bigPath), Deno.errors.NotFound);
    // Not adopted (the job failed in the runner): removed.
    const failed = new OutputSpool({ dir, files });
    const failedPath = failed.reserveFile();
    await Deno.writeFile(failedPath, new Uint8Array([1]));
    await failed.dispose();
    await assert.rejects(Deno.stat(failedPath), Deno.errors.NotFound);
    await files.clear();
    assert.deepEqual(await Array.fromAsync(Deno.readDir(dir)), []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
