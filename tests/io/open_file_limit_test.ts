import assert from "node:assert/strict";
import { BASE_DESCRIPTORS, DESCRIPTORS_PER_JOB } from "../../io/open_file_limit.ts";

/** Runs `ensureOpenFiles(jobs)` in a child whose descriptor limit the shell set first (`ulimit` ARGS). */
async function ensureUnder(ulimit: string, jobs: number): Promise<{ room: Record<string, unknown>; soft: string }> {
  const url = new URL("../../io/open_file_limit.ts", import.meta.url).href;
  const code = `import { ensureOpenFiles } from ${JSON.stringify(url)};
    console.log(JSON.stringify(ensureOpenFiles(${jobs})));`;
  const out = await new Deno.Command("sh", {
    args: ["-c", `ulimit ${ulimit} && "$0" eval --no-check "$1" && ulimit -Sn`, Deno.execPath(), code],
    stdout: "piped",
    stderr: "inherit",
  }).output();
  assert.ok(out.success);
  const [json, soft] = new TextDecoder().decode(out.stdout).trim().split("\n");
  return { room: JSON.parse(json), soft };
}

Deno.test("ensureOpenFiles: a soft limit below the need is raised as far as the need, within the hard limit", async () => {
  const needed = BASE_DESCRIPTORS + DESCRIPTORS_PER_JOB * 50;
  // Deno itself may raise a low soft limit at start-up: either way the process ends with room for the need.
  const { room } = await ensureUnder("-Sn 100", 50);
  assert.equal(room.needed, needed);
  assert.equal(room.enough, true);
  assert.ok(Number(room.soft) >= needed, `soft ${room.soft}`);
  // Within a hard limit just above the need: raised to the need at least, never past the hard limit.
  const tight = await ensureUnder(`-Sn 100 && ulimit -Hn ${needed + 100}`, 50);
  assert.equal(tight.room.enough, true);
  assert.ok(Number(tight.room.soft) >= needed && Number(tight.room.soft) <= needed + 100, `soft ${tight.room.soft}`);
  // One already enough is left as it is (never lowered).
  const roomy = await ensureUnder("-Sn 4096", 50);
  assert.ok(Number(roomy.room.soft) >= 4096);
  assert.equal(roomy.room.enough, true);
});

Deno.test("ensureOpenFiles: a hard limit below the need is said (enough: false), the soft one raised to it", async () => {
  const { room } = await ensureUnder("-n 40", 50);
  assert.equal(room.enough, false);
  assert.equal(room.hard, 40);
  assert.equal(room.soft, 40);
});
