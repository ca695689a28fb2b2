/**
 * A real full disk for tests: a small tmpfs mounted for the test (root
 * only: where `mount` fails, tests that need one are skipped, saying so).
 */

/** A tmpfs of `size` mounted at a fresh directory; undefined where it cannot be made (not root, no mount). */
export function tinyDisk(size = "64k"): (Disposable & { path: string }) | undefined {
  const path = Deno.makeTempDirSync({ prefix: "vico-full-" });
  const mount = new Deno.Command("mount", {
    args: ["-t", "tmpfs", "-o", `size=${size}`, "tmpfs", path],
    stderr: "null",
  })
    .outputSync();
  if (!mount.success) {
    Deno.removeSync(path);
    return undefined;
  }
  return {
    path,
    [Symbol.dispose]() {
      new Deno.Command("umount", { args: [path] }).outputSync();
      Deno.removeSync(path);
    },
  };
}

/** Writes zeros to `path` until the file system is full. */
export function fill(path: string): void {
  const file = Deno.openSync(path, { write: true, create: true });
  const chunk = new Uint8Array(4096);
  try {
    for (;;) file.writeSync(chunk);
  } catch (err) {
    if (!(err instanceof Error) || !/No space left|os error 28/.test(err.message)) throw err;
  } finally {
    file.close();
  }
}

/** Whether a tiny disk can be mounted here (false: not root, or no `mount`); logs why tests skip. */
export function canMountTinyDisk(): boolean {
  const disk = tinyDisk();
  disk?.[Symbol.dispose]();
  if (disk === undefined) console.warn("tiny_disk: cannot mount a tmpfs here (not root?); full-disk tests are skipped");
  return disk !== undefined;
}
