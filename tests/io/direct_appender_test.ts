import assert from "node:assert/strict";
import { join } from "node:path";
import { DirectAppender, MAX_DIRECT_APPENDERS } from "../../io/direct_appender.ts";
import { canMountTinyDisk, tinyDisk } from "../helpers/tiny_disk.ts";

/** Bytes that differ at every position (a shifted or repeated block shows). */
function pattern(size: number, seed: number): Uint8Array {
  const bytes = new Uint8Array(size);
  let x = seed * 2654435761 + 1;
  for (let i = 0; i < size; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    bytes[i] = x >>> 24;
  }
  return bytes;
}

/** Whether this platform and this temporary directory take direct writes at all. */
const direct = await (async () => {
  const probe = await Deno.makeTempFile();
  const appender = DirectAppender.open(probe, 0);
  await appender?.close();
  await Deno.remove(probe);
  if (appender === undefined) console.warn("direct_appender: no O_DIRECT here (not Linux glibc, or refused): skipped");
  return appender !== undefined;
})();

Deno.test({
  name:
    "DirectAppender.write/finish: the file is the prefix then every byte appended, whatever the chunking and the tail",
  ignore: !direct,
  fn: async () => {
    const dir = await Deno.makeTempDir();
    try {
      const prefix = pattern(8192, 1);
      const buffer = 8192; // small buffers: many turns of the two
      for (const size of [0, 1, 4095, 4096, 4097, 2 * buffer, 2 * buffer + 1, 5 * buffer + 777]) {
        for (const chunk of [1, 7, 4096, 65537, size || 1]) {
          if (chunk === 1 && size > 20000) continue; // a byte at a time is slow and shows nothing more there
          const path = join(dir, `out-${size}-${chunk}`);
          await Deno.writeFile(path, prefix);
          const data = pattern(size, size + chunk);
          const out = DirectAppender.open(path, prefix.length, buffer)!;
          for (let at = 0; at < size; at += chunk) await out.write(data.subarray(at, Math.min(size, at + chunk)));
          await out.finish();
          const back = await Deno.readFile(path);
          assert.equal(back.length, prefix.length + size, `size ${size} in chunks of ${chunk}`);
          assert.deepEqual(back.subarray(0, prefix.length), prefix);
          assert.ok(back.subarray(prefix.length).every((b, i) => b === data[i]), `size ${size} in chunks of ${chunk}`);
        }
      }
      assert.equal(DirectAppender.openCount, 0, "each finish closed its appender");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "DirectAppender.open: refuses an unaligned offset; undefined with the limit of appenders open, one again once one closes",
  ignore: !direct,
  fn: async () => {
    const path = await Deno.makeTempFile();
    try {
      assert.throws(() => DirectAppender.open(path, 100), RangeError);
      const open = Array.from({ length: MAX_DIRECT_APPENDERS }, () => DirectAppender.open(path, 0));
      assert.ok(open.every((a) => a !== undefined));
      assert.equal(DirectAppender.open(path, 0), undefined, "over the limit: the caller writes through the cache");
      await open[0]!.close();
      const again = DirectAppender.open(path, 0);
      assert.notEqual(again, undefined);
      for (const a of [again, ...open.slice(1)]) await a!.close();
      assert.equal(DirectAppender.openCount, 0);
    } finally {
      await Deno.remove(path);
    }
  },
});

Deno.test({
  name: "DirectAppender on a full disk: the write fails with the system's reason (ENOSPC), and close still releases it",
  ignore: !direct || !canMountTinyDisk(),
  fn: async () => {
    using disk = tinyDisk("256k")!;
    const path = join(disk.path, "out");
    await Deno.writeFile(path, new Uint8Array(0));
    const out = DirectAppender.open(path, 0, 65536);
    if (out === undefined) return; // this tmpfs takes no O_DIRECT: nothing to check here
    const chunk = pattern(65536, 3);
    const err = await (async () => {
      for (let i = 0; i < 16; i++) await out.write(chunk);
      await out.finish();
    })().then(() => undefined, (e) => e);
    assert.ok(err instanceof Error, "1 MiB does not fit in 256 KiB");
    assert.match(err.message, /No space left on device \(os error 28\): write '.*out'/);
    assert.equal((err as Error & { errno: number }).errno, 28);
    await out.close();
    assert.equal(DirectAppender.openCount, 0);
  },
});

Deno.test({
  name: "DirectAppender.open: a symbolic link at the path is refused (undefined), never written through",
  ignore: !direct,
  fn: async () => {
    const dir = await Deno.makeTempDir();
    try {
      const target = join(dir, "elsewhere");
      await Deno.writeTextFile(target, "untouched");
      await Deno.symlink(target, join(dir, "out.part"));
      assert.equal(DirectAppender.open(join(dir, "out.part"), 0), undefined);
      assert.equal(DirectAppender.openCount, 0);
      assert.equal(await Deno.readTextFile(target), "untouched");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

/** A loop device of `sectorBytes` logical sectors over a fresh 1 MiB file; undefined where none can be made (not root). */
function loopDevice(sectorBytes: number): (Disposable & { path: string }) | undefined {
  const image = Deno.makeTempFileSync({ prefix: "vico-loop-" });
  Deno.truncateSync(image, 1 << 20);
  for (const losetup of ["losetup", "/usr/sbin/losetup", "/sbin/losetup"]) {
    try {
      const out = new Deno.Command(losetup, {
        args: ["-f", "--show", "--sector-size", String(sectorBytes), image],
        stdout: "piped",
        stderr: "null",
      }).outputSync();
      if (!out.success) break;
      const path = new TextDecoder().decode(out.stdout).trim();
      return {
        path,
        [Symbol.dispose]() {
          new Deno.Command(losetup, { args: ["-d", path] }).outputSync();
          Deno.removeSync(image);
        },
      };
    } catch {
      // Not this path: the next one.
    }
  }
  Deno.removeSync(image);
  return undefined;
}

const loop = direct ? loopDevice(8192) : undefined;
loop?.[Symbol.dispose]();
if (direct && loop === undefined) {
  console.warn("direct_appender: no loop device here (not root?): the EINVAL test skips");
}

Deno.test({
  name:
    "DirectAppender on a device whose sectors are bigger than its writes: the kernel's EINVAL clears O_DIRECT and the bytes go through the cache",
  ignore: loop === undefined,
  fn: async () => {
    using device = loopDevice(8192)!; // 8 KiB sectors: a direct write of 4 KiB is refused
    const out = DirectAppender.open(device.path, 0, 4096)!;
    assert.notEqual(out, undefined, "the device takes O_DIRECT at open");
    const data = pattern(20000, 5);
    for (let at = 0; at < data.length; at += 3000) await out.write(data.subarray(at, at + 3000));
    await out.close(); // no finish: a device cannot be cut to size
    // Read back by `head` (Deno lets only --allow-all open a device): the whole buffers written, the rest unsent.
    const read = await new Deno.Command("head", { args: ["-c", "16384", device.path], stdout: "piped" }).output();
    const back = read.stdout;
    assert.equal(back.length, 16384);
    assert.ok(back.every((b, i) => b === data[i]), "every byte written through the cache after the refusal");
  },
});
