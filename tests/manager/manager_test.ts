import assert from "node:assert/strict";
import { VicoError } from "../../core/errors.ts";
import { parseJobList } from "../../manager/jobs/job_list.ts";
import { Manager } from "../../manager/manager.ts";

Deno.test("Manager.start() refuses local workers without a localWorkers factory, before touching the results", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const jobs = parseJobList(new TextEncoder().encode("echo one\n"));
    await assert.rejects(
      () => Manager.start({ jobs, resultsDir: `${dir}/res`, port: 0, local: 1 }),
      (err) => err instanceof VicoError && err.code === "USAGE",
    );
    assert.deepEqual([...Deno.readDirSync(dir)], []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
