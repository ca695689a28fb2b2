import assert from "node:assert/strict";
import { join } from "node:path";
import { JournalDamagedError } from "../../../core/errors.ts";
import { StatusServer } from "../../../manager/observe/status_server.ts";
import type { StatusSnapshot } from "../../../manager/observe/run_status.ts";
import { JOURNAL_FILE } from "../../../manager/results/results_store.ts";
import { tempDir } from "../../helpers/journal.ts";

const T0 = Date.parse("2026-01-01T00:00:00Z");
const job = (line: number) =>
  JSON.stringify({
    type: "job",
    key: `k${line}`,
    line,
    command: `cmd ${line}`,
    status: 0,
    host: "h",
    start: new Date(T0 + line * 1000).toISOString(),
    end: new Date(T0 + line * 1000 + 500).toISOString(),
    attempt: 1,
    size: 0,
    sha256: "",
    output: null,
  }) + "\n";

Deno.test("StatusServer.timeline: reads only what the journal gained since, the line being written waits, damage names its line", async () => {
  await using dir = await tempDir();
  const path = join(dir.path, JOURNAL_FILE);
  const server = StatusServer.start({
    hostname: "127.0.0.1",
    port: 0,
    snapshot: () => ({}) as StatusSnapshot,
    resultsDir: dir.path,
  });
  try {
    assert.equal((await server.timeline()).total, 0, "no journal yet");
    await Deno.writeTextFile(path, job(1) + job(2) + job(3).slice(0, 25));
    assert.equal((await server.timeline()).total, 2, "the torn line waits");
    await Deno.writeTextFile(path, job(3).slice(25) + job(4), { append: true });
    assert.equal((await server.timeline()).total, 4, "each job once");
    assert.equal((await server.timeline()).total, 4);
    await Deno.writeTextFile(path, "{oops\n" + job(6), { append: true });
    await assert.rejects(
      server.timeline(),
      (err) => err instanceof JournalDamagedError && err.code === "JOURNAL_DAMAGED" && err.line === 5,
      "the line counts from the journal's start, not from where the read began",
    );
  } finally {
    await server.close();
  }
});
