import assert from "node:assert/strict";

/** `defaultStateDir("runner")` in a child with exactly `env`: its path, or its error's message. */
async function stateDirWith(env: Record<string, string>): Promise<string> {
  const url = new URL("../../io/state_dir.ts", import.meta.url).href;
  const code = `import { defaultStateDir } from ${JSON.stringify(url)};
    try { console.log(defaultStateDir("runner")); } catch (e) { console.log("error: " + e.message); }`;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--no-check", code],
    clearEnv: true,
    env: { PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin", DENO_DIR: Deno.env.get("DENO_DIR") ?? "", ...env },
    stdout: "piped",
    stderr: "inherit",
  }).output();
  return new TextDecoder().decode(out.stdout).trim();
}

Deno.test("defaultStateDir: XDG_STATE_HOME if absolute, else HOME's .local/state; no absolute home is refused, never the cwd", async () => {
  assert.equal(await stateDirWith({ HOME: "/home/u", XDG_STATE_HOME: "/var/st" }), "/var/st/vico/runner");
  assert.equal(await stateDirWith({ HOME: "/home/u" }), "/home/u/.local/state/vico/runner");
  // The XDG spec: an empty or relative value is ignored.
  assert.equal(await stateDirWith({ HOME: "/home/u", XDG_STATE_HOME: "" }), "/home/u/.local/state/vico/runner");
  assert.equal(await stateDirWith({ HOME: "/home/u", XDG_STATE_HOME: "rel" }), "/home/u/.local/state/vico/runner");
  assert.equal(
    await stateDirWith({}),
    "error: HOME is not set, so there is no default state directory: give --state-dir DIR",
  );
  assert.equal(
    await stateDirWith({ HOME: "" }),
    'error: HOME is not an absolute path (""), so there is no default state directory: give --state-dir DIR',
  );
});
