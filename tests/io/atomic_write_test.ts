import assert from "node:assert/strict";
import { join } from "node:path";
import { writeFileAtomic } from "../../io/atomic_write.ts";

Deno.test("writeFileAtomic() replaces a file whole, leaves no temporary file, and gives a new file its mode", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = join(dir, "id");
    await writeFileAtomic(path, "first\n", { mode: 0o600 });
    assert.equal(await Deno.readTextFile(path), "first\n");
    assert.equal((await Deno.stat(path)).mode! & 0o777, 0o600);
    // A stale temporary file from a crash is simply replaced.
    await Deno.writeTextFile(path + ".tmp", "torn garbage that is longer than the new text");
    await writeFileAtomic(path, new TextEncoder().encode("second"));
    assert.equal(await Deno.readTextFile(path), "second");
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["id"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
