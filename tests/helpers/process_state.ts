/**
 * Whether a process still runs, for tests that end jobs and check what they
 * left: its state letter from `/proc` (read through a shell: Deno's
 * permissions refuse `/proc/<pid>` to a test without `--allow-all`).
 *
 * @module
 */

/** The state letter of a process (`R`, `S`, `Z`, ...), or undefined when it is gone. */
export async function stateOf(pid: number): Promise<string | undefined> {
  const out = await new Deno.Command("/bin/sh", {
    args: ["-c", `cat /proc/${pid}/stat 2>/dev/null`],
    stdout: "piped",
    stderr: "null",
  }).output();
  const stat = new TextDecoder().decode(out.stdout);
  if (stat === "") return undefined;
  return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[0];
}

/** Whether a process runs (exists and is not a zombie: pid 1 here may never reap orphans). */
export async function alive(pid: number): Promise<boolean> {
  const state = await stateOf(pid);
  return state !== undefined && state !== "Z";
}

/**
 * Whether a process that was sent SIGKILL has ended within `withinMs`: the
 * signal is delivered at once, but a loaded machine may take a while to tear
 * the process down (seen: still exiting right after its job was reported).
 */
export async function endsWithin(pid: number, withinMs = 2_000): Promise<boolean> {
  const deadline = performance.now() + withinMs;
  while (await alive(pid)) {
    if (performance.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 20));
  }
  return true;
}
