/**
 * The compiled `manager` and `runner` binaries (`deno task compile`). Building
 * them needs Deno's `denort` runtime, which `deno compile` downloads; where it
 * cannot (no network), set `DENORT_BIN=/path/to/denort`. Without either this
 * test is skipped and says so in its name. The same entry points are tested
 * under `deno run` with the same permission set everywhere else.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { EntryProcess, LISTENING, ROOT } from "../helpers/entry_process.ts";
import { readRecords, tempDir } from "../helpers/journal.ts";

function findDenort(): string | undefined {
  const explicit = Deno.env.get("DENORT_BIN");
  if (explicit) return Deno.statSync(explicit).isFile ? explicit : undefined;
  // A denort that an earlier `deno compile` downloaded into the cache.
  const info = new Deno.Command(Deno.execPath(), { args: ["info", "--json"], stderr: "null" }).outputSync();
  if (!info.success) return undefined;
  const denoDir: string = JSON.parse(new TextDecoder().decode(info.stdout)).denoDir;
  const release = join(denoDir, "dl", "release", `v${Deno.version.deno}`);
  try {
    for (const entry of Deno.readDirSync(release)) {
      if (entry.name.startsWith("denort-")) return join(release, entry.name);
    }
  } catch {
    // No cache directory: never downloaded.
  }
  return undefined;
}

const denort = findDenort();

Deno.test({
  name: denort
    ? "compiled manager and runner binaries finish a job list end to end"
    : "compiled manager and runner binaries (SKIPPED: denort unavailable; set DENORT_BIN=/path/to/denort)",
  ignore: denort === undefined,
  async fn() {
    await using dir = await tempDir();
    const env = Deno.env.get("DENORT_BIN") ? { DENORT_BIN: Deno.env.get("DENORT_BIN")! } : undefined;
    // The compile task itself (scripts/compile.ts), into a temporary directory.
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-q", "-A", ROOT + "scripts/compile.ts", "--out", dir.path],
      cwd: ROOT,
      env,
    }).output();
    assert.ok(out.success, new TextDecoder().decode(out.stderr));
    for (const name of ["manager", "runner"]) {
      const version = await new Deno.Command(join(dir.path, name), { args: ["--version"] }).output();
      assert.match(new TextDecoder().decode(version.stdout), new RegExp(`^${name} \\(vico\\) \\d+\\.\\d+\\.\\d+\\n`));
    }
    const list = join(dir.path, "jobs.txt");
    await Deno.writeTextFile(list, "echo a\necho b\nexit 4\n");
    const results = join(dir.path, "res");
    await using manager = EntryProcess.spawnProgram(join(dir.path, "manager"), [
      "--jobs",
      list,
      "--results",
      results,
      "--port",
      "0",
    ]);
    const port = Number((await manager.waitFor(LISTENING))[1]);
    await using runner = EntryProcess.spawnProgram(join(dir.path, "runner"), [
      "--manager",
      `127.0.0.1:${port}`,
      "--workers",
      "2",
    ]);
    const [ms, rs] = await Promise.all([manager.exit(), runner.exit()]);
    assert.equal(rs.code, 0, runner.stderr);
    assert.equal(ms.code, 1, manager.stderr);
    assert.equal(readRecords(results).length, 3);
  },
});
