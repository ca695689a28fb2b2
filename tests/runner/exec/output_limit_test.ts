import assert from "node:assert/strict";
import { OutputLimitError, outputLimitNote } from "../../../runner/exec/output_limit.ts";

Deno.test("OutputLimitError is a RangeError naming its limit; outputLimitNote() is the text runner's note for it", () => {
  const err = new OutputLimitError(1000);
  assert.ok(err instanceof RangeError);
  assert.equal(err.limit, 1000);
  assert.equal(err.message, "Output exceeds the limit of 1000 bytes");
  // What a text runner writes for a job that failed in it: `vico runner: <reason>; the job was killed`.
  assert.equal(outputLimitNote(1000), `vico runner: ${err.message}; the job was killed\n`);
});
