import assert from "node:assert/strict";
import { join } from "node:path";
import { serveStatus } from "../../cli/serve_status.ts";
import type { Manager } from "../../manager/manager.ts";
import type { Timeline } from "../../manager/observe/report.ts";
import { JOURNAL_FILE } from "../../manager/results/results_store.ts";
import { logger } from "../../util/log.ts";
import { tempDir } from "../helpers/journal.ts";

const job = (line: number, command: string) =>
  JSON.stringify({
    type: "job",
    key: `k-${line}`,
    line,
    command,
    status: 0,
    host: "h",
    start: new Date(Date.UTC(2026, 0, 1, 0, 0, line)).toISOString(),
    end: new Date(Date.UTC(2026, 0, 1, 0, 0, line + 1)).toISOString(),
    attempt: 1,
    size: 0,
    sha256: "",
    output: null,
  }) + "\n";

Deno.test("serveStatus: a timeline asked for while the manager starts shows nothing of a journal --fresh then moves aside", async () => {
  await using dir = await tempDir();
  const results = join(dir.path, "res");
  Deno.mkdirSync(results);
  // The earlier run's journal, long, as the manager finds it on its start.
  Deno.writeTextFileSync(join(results, JOURNAL_FILE), Array.from({ length: 20 }, (_, i) => job(i + 1, "old")).join(""));
  let manager: Manager | undefined;
  const server = serveStatus({ hostname: "127.0.0.1", port: 0, resultsDir: results }, () => manager!, logger("test"));
  const timeline = async () =>
    (await (await fetch(`http://127.0.0.1:${server.address.port}/timeline`)).json()) as Timeline;
  try {
    // A page left open polls while the manager starts (it answers /timeline before /status).
    const early = await fetch(`http://127.0.0.1:${server.address.port}/timeline`);
    await early.body?.cancel();
    // --fresh: moved aside, a new journal at the path; the manager serves.
    Deno.renameSync(results, `${results}.old`);
    Deno.mkdirSync(results);
    const fresh = job(1, "new ".repeat(300)) + job(2, "new");
    Deno.writeTextFileSync(join(results, JOURNAL_FILE), fresh);
    manager = {
      journalLength: () => fresh.length,
      status: { counts: () => ({ finished: false }) },
      settledByHost: () => new Map(),
    } as unknown as Manager;
    const now = await timeline();
    assert.deepEqual(now.jobs.map((j) => j.name.slice(0, 3)), ["new", "new"], "only this run's journal");
  } finally {
    await server.close();
  }
});
