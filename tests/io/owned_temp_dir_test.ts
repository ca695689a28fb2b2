import assert from "node:assert/strict";
import { join } from "node:path";
import { OwnedTempDir, OWNER_FILE, sweepEnded } from "../../io/owned_temp_dir.ts";
import { tempDir } from "../helpers/journal.ts";

const exists = (path: string) => Deno.lstat(path).then(() => true, () => false);

/**
 * A real process that makes an OwnedTempDir in `parent`, writes a spool
 * file into it, says its path on stdout and waits to be killed.
 */
async function holder(parent: string): Promise<{ path: string; kill: () => Promise<void> }> {
  const url = new URL("../../io/owned_temp_dir.ts", import.meta.url).href;
  const code = `import { OwnedTempDir } from ${JSON.stringify(url)};
    const d = OwnedTempDir.make("vico-runner-", { dir: ${JSON.stringify(parent)} });
    Deno.writeTextFileSync(d.path + "/spool-1", "output of a job");
    console.log(d.path);
    setInterval(() => {}, 1000);`;
  const child = new Deno.Command(Deno.execPath(), {
    args: ["eval", "--no-check", code],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let said = "";
  while (!said.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`holder ended before saying its directory: ${said}`);
    said += value;
  }
  return {
    path: said.trim(),
    kill: async () => {
      child.kill("SIGKILL");
      await child.status;
      await reader.cancel().catch(() => {});
    },
  };
}

Deno.test("OwnedTempDir.make: the directory of a SIGKILLed process is removed by the next one; a live process's is kept", async () => {
  await using tmp = await tempDir();
  const dead = await holder(tmp.path);
  const alive = await holder(tmp.path);
  try {
    await dead.kill();
    assert.ok(await exists(join(dead.path, "spool-1")), "SIGKILL left it behind");
    const next = OwnedTempDir.make("vico-local-", { dir: tmp.path });
    try {
      assert.equal(await exists(dead.path), false, "the ended process's directory is swept");
      assert.ok(await exists(join(alive.path, "spool-1")), "the live process's directory is kept");
      assert.ok(await exists(join(next.path, OWNER_FILE)));
    } finally {
      next.remove();
    }
    assert.equal(await exists(next.path), false, "remove() removes its own");
  } finally {
    await alive.kill();
  }
});

Deno.test("sweepEnded: removes nothing it cannot prove is an ended vico's spool (no owner file, wrong mode, a link, a file, another name, held, another host, a directory inside)", async () => {
  await using tmp = await tempDir();
  const p = tmp.path;
  const make = (name: string, mode = 0o700) => {
    Deno.mkdirSync(join(p, name));
    Deno.chmodSync(join(p, name), mode);
    return join(p, name);
  };
  // An older vico's, without an owner file.
  make("vico-runner-old");
  // Mode 0755: not made by OwnedTempDir.
  const open = make("vico-local-open", 0o755);
  Deno.writeTextFileSync(join(open, OWNER_FILE), "");
  // Its owner file is a link.
  const linked = make("vico-local-linked");
  Deno.writeTextFileSync(join(p, "target"), "");
  Deno.symlinkSync(join(p, "target"), join(linked, OWNER_FILE));
  // A link to an ended vico's directory, under a swept name.
  const real = make("elsewhere");
  Deno.writeTextFileSync(join(real, OWNER_FILE), "");
  Deno.symlinkSync(real, join(p, "vico-run-link"));
  // A file under a swept name; a directory under another name.
  Deno.writeTextFileSync(join(p, "vico-node-file"), "");
  const other = make("my-vico-runner-x");
  Deno.writeTextFileSync(join(other, OWNER_FILE), "");
  // One held by this process (a second open file's flock conflicts with it).
  const held = OwnedTempDir.make("vico-run-", { dir: p });
  const owner = JSON.stringify({ host: Deno.hostname(), pid: 1, since: "2026-01-01T00:00:00.000Z" });
  // Ended, but holding a directory (a mount point, say): left whole.
  const nested = make("vico-runner-nested");
  Deno.writeTextFileSync(join(nested, OWNER_FILE), owner);
  Deno.mkdirSync(join(nested, "mnt"));
  Deno.writeTextFileSync(join(nested, "mnt", "thesis.tex"), "years of work");
  // Ended on another host (a TMPDIR shared between hosts): left.
  const remote = make("vico-local-remote");
  Deno.writeTextFileSync(join(remote, OWNER_FILE), JSON.stringify({ host: `not-${Deno.hostname()}`, pid: 1 }));
  // And one that is provably ended: mode 0700, this host's owner file nobody locks, files and a link only.
  const ended = make("vico-runner-ended");
  Deno.writeTextFileSync(join(ended, OWNER_FILE), owner);
  Deno.writeTextFileSync(join(ended, "spool-1"), "x");
  Deno.symlinkSync(real, join(ended, "link-out"));
  try {
    assert.deepEqual(sweepEnded(p), [ended]);
    const left = [...Deno.readDirSync(p)].map((e) => e.name).sort();
    assert.deepEqual(
      left,
      [
        "elsewhere",
        "my-vico-runner-x",
        "target",
        held.path.slice(p.length + 1),
        "vico-local-linked",
        "vico-local-open",
        "vico-local-remote",
        "vico-runner-nested",
        "vico-node-file",
        "vico-run-link",
        "vico-runner-old",
      ].sort(),
    );
    assert.ok(Deno.statSync(join(real, OWNER_FILE)).isFile, "nothing removed through a link");
    assert.equal(Deno.readTextFileSync(join(nested, "mnt", "thesis.tex")), "years of work");
  } finally {
    held.remove();
  }
});

Deno.test("OwnedTempDir.make: 200 directories held by this process each survive the sweep after the next make", async () => {
  await using tmp = await tempDir();
  const dirs: OwnedTempDir[] = [];
  try {
    for (let i = 0; i < 200; i++) {
      dirs.push(OwnedTempDir.make(i % 2 === 0 ? "vico-local-" : "vico-runner-", { dir: tmp.path }));
      assert.deepEqual(sweepEnded(tmp.path), [], `round ${i}`);
    }
    for (const d of dirs) assert.ok(await exists(join(d.path, OWNER_FILE)));
  } finally {
    for (const d of dirs) d.remove();
  }
});

Deno.test("OwnedTempDir.make: a parent it cannot use is named in the error, with what to do about Deno's refusal", async () => {
  await using tmp = await tempDir();
  const missing = join(tmp.path, "missing");
  assert.throws(
    () => OwnedTempDir.make("vico-local-", { dir: missing }),
    (err: Error) =>
      err.message.startsWith(`cannot make a temporary directory in ${missing}: `) &&
      err.cause instanceof Deno.errors.NotFound,
  );
  // Deno grants paths under /dev to --allow-all only, whatever --allow-write says.
  assert.throws(
    () => OwnedTempDir.make("vico-local-", { dir: "/dev" }),
    (err: Error) =>
      err.message === "cannot make a temporary directory in /dev: Deno's permissions refuse it; " +
          "use a directory outside /dev, /proc and /sys" && err.cause instanceof Deno.errors.NotCapable,
  );
});

Deno.test("OwnedTempDir.make: an empty TMPDIR means unset (/tmp), as for mktemp and glibc", async () => {
  const url = new URL("../../io/owned_temp_dir.ts", import.meta.url).href;
  const code = `import { OwnedTempDir } from ${JSON.stringify(url)};
    const d = OwnedTempDir.make("vico-local-"); console.log(d.path); d.remove();`;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--no-check", code],
    env: { TMPDIR: "" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.ok(out.success, new TextDecoder().decode(out.stderr));
  assert.match(new TextDecoder().decode(out.stdout), /^\/tmp\/vico-local-/);
});
