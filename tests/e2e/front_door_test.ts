/**
 * What a user meets first: `--help` with examples and `--version` on every
 * command, flags from `VICO_*` environment variables (as systemd environment
 * files and batch scripts set them), and JSON logs.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import config from "../../deno.json" with { type: "json" };
import { EntryProcess, LISTENING, ROOT, RUN_FLAGS, TEST_ENV } from "../helpers/entry_process.ts";
import { readRecords, tempDir } from "../helpers/journal.ts";

Deno.test("manager and runner --version print the baked-in version and the protocol versions", async () => {
  for (const entry of ["manager.ts", "runner.ts"]) {
    await using p = EntryProcess.spawn(entry, ["--version"]);
    const status = await p.exit();
    assert.equal(status.code, 0, p.stderr);
    const program = entry.replace(".ts", "");
    assert.match(p.stdout, new RegExp(`^${program} \\(vico\\) ${config.version.replaceAll(".", "\\.")}\\n`));
    assert.match(p.stdout, /protocols: text 1\.1, binary 1\.0, vico extension VICO\/1/);
  }
});

Deno.test("every command's --help exits 0 with a usage line, examples and the environment variables", async () => {
  for (
    const [entry, args] of [["manager.ts", ["--help"]], ["runner.ts", ["-h"]], ["manager.ts", ["verify", "--help"]]]
  ) {
    await using p = EntryProcess.spawn(entry as string, args as string[]);
    const status = await p.exit();
    assert.equal(status.code, 0, `${entry} ${args}: ${p.stderr}`);
    assert.match(p.stdout, /^Usage: /, `${entry} ${args}`);
    assert.match(p.stdout, /\nExamples?:\n/);
    if (args[0] !== "verify") {
      assert.match(p.stdout, /VICO_/);
      assert.match(p.stdout, /--log-format/);
    }
  }
});

Deno.test("manager and runner take every flag from VICO_* variables; the command line wins", async () => {
  await using dir = await tempDir();
  const list = join(dir.path, "jobs.txt");
  await Deno.writeTextFile(list, Array.from({ length: 6 }, (_, i) => `echo env-${i}`).join("\n") + "\n");
  const results = join(dir.path, "res");
  // --port on the command line beats VICO_PORT (99999 is out of range: had it won, the manager would not start).
  await using manager = EntryProcess.spawn("manager.ts", ["--port", "0"], {
    env: { VICO_JOBS: list, VICO_RESULTS: results, VICO_PORT: "99999", VICO_NO_PROGRESS: "1" },
  });
  const port = Number((await manager.waitFor(LISTENING))[1]);
  await using runner = EntryProcess.spawn("runner.ts", [], {
    env: { VICO_MANAGER: `127.0.0.1:${port}`, VICO_WORKERS: "2", VICO_NAME: "from-env" },
  });
  const [ms, rs] = await Promise.all([manager.exit(), runner.exit()]);
  assert.equal(rs.code, 0, runner.stderr);
  assert.equal(ms.code, 0, manager.stderr);
  const records = readRecords(results);
  assert.equal(records.length, 6);
  assert.ok(records.every((r) => r.host === "from-env"), "VICO_NAME named the runner");
});

Deno.test("a bad value from the environment is a usage error (exit 2) that names the variable", async () => {
  await using p = EntryProcess.spawn("runner.ts", ["--manager", "127.0.0.1:1"], { env: { VICO_PERSIST: "maybe" } });
  const status = await p.exit();
  assert.equal(status.code, 2);
  assert.match(p.stderr, /VICO_PERSIST="maybe": expected 1 or 0/);
});

Deno.test("manager --log-format json writes only JSON lines to stderr, each with time, level, logger, message", async () => {
  await using dir = await tempDir();
  const list = join(dir.path, "jobs.txt");
  await Deno.writeTextFile(list, "echo a\nexit 3\n");
  await using manager = EntryProcess.spawn("manager.ts", [
    ...["--jobs", list, "--results", join(dir.path, "res"), "--local", "2", "--log-format", "json", "-v"],
  ]);
  const status = await manager.exit();
  assert.equal(status.code, 1);
  const lines = manager.stderr.split("\n").filter((l) => l.length > 0);
  assert.ok(lines.length >= 2, manager.stderr);
  for (const line of lines) {
    const rec = JSON.parse(line);
    assert.equal(typeof rec.time, "string");
    assert.ok(["trace", "debug", "info", "warning", "error", "fatal"].includes(rec.level), line);
    assert.equal(typeof rec.logger, "string");
    assert.equal(typeof rec.message, "string");
  }
  assert.ok(lines.some((l) => JSON.parse(l).properties?.count === 2), "structured properties are kept");
  assert.match(manager.stdout, /of 2 in the list 1 succeeded, 1 failed/, "the summary stays on stdout");
});

Deno.test("under journald (stderr is the JOURNAL_STREAM socket) logs carry a priority prefix and no time", async () => {
  // python3 stands in for systemd: stderr is a socket, JOURNAL_STREAM names its device and inode.
  const relay = `
import os, socket, subprocess, sys
a, b = socket.socketpair()
st = os.fstat(b.fileno())
env = dict(os.environ, JOURNAL_STREAM=f"{st.st_dev}:{st.st_ino}")
p = subprocess.Popen(sys.argv[1:], stderr=b.fileno(), stdout=subprocess.DEVNULL, env=env)
b.close()
data = b""
while True:
    c = a.recv(65536)
    if not c: break
    data += c
p.wait()
sys.stdout.write(data.decode())
`;
  await using dir = await tempDir();
  const list = join(dir.path, "jobs.txt");
  await Deno.writeTextFile(list, "exit 3\n");
  const out = await new Deno.Command("python3", {
    args: ["-c", relay, Deno.execPath(), ...RUN_FLAGS, ROOT + "manager.ts", "--jobs", list, "--local", "1"],
    cwd: ROOT,
    env: { ...TEST_ENV },
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  assert.ok(out.success, new TextDecoder().decode(out.stderr));
  assert.match(text, /^<6>manager: Running 1 job\(s\) from /m, text);
  assert.doesNotMatch(text, /\d\d:\d\d:\d\d\.\d{3}/, "journald stamps the time itself");
});
