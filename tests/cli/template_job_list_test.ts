import assert from "node:assert/strict";
import { loadTemplateRun, templateJobList } from "../../cli/template_job_list.ts";
import { VicoError } from "../../core/errors.ts";
import { jobKey } from "../../manager/jobs/job_key.ts";
import { identityOf } from "../../manager/jobs/job_list.ts";

const stdinOf = (text: string) => ReadableStream.from([new TextEncoder().encode(text)]);

Deno.test("templateJobList: one plain job per generated command, lines are sequence numbers", async () => {
  const { run } = await loadTemplateRun(["gzip", "-9", ":::", "a b.txt", "it's.txt", "a b.txt"], {});
  const { list, jobs } = templateJobList(run);
  assert.deepEqual(list.commands, ["gzip -9 'a b.txt'", "gzip -9 'it'\\''s.txt'", "gzip -9 'a b.txt'"]);
  assert.deepEqual([...list.lines], [1, 2, 3]);
  assert.deepEqual([...list.occurrences], [1, 1, 2]);
  assert.equal(list.format, "text");
  assert.equal(list.source, "template");
  assert.deepEqual(jobs.map((j) => j.args), [["a b.txt"], ["it's.txt"], ["a b.txt"]]);
});

Deno.test("templateJobList: a bare template from standard input skips blank and # lines like a job list", async () => {
  const { run } = await loadTemplateRun([], { stdin: stdinOf("echo a\n\n# note\necho b\n") });
  const { list, jobs } = templateJobList(run);
  assert.deepEqual(list.commands, ["echo a", "echo b"]);
  assert.deepEqual([...list.lines], [1, 4]);
  assert.equal(jobs[list.lines[1] - 1].args[0], "echo b");
});

Deno.test("templateJobList: {%} stays ${VICO_SLOT}, so a job's key does not depend on its slot", async () => {
  const { run } = await loadTemplateRun(["CUDA_VISIBLE_DEVICES={%}", "train", "{}", ":::", "x"], {});
  const { list } = templateJobList(run);
  assert.equal(list.commands[0], "CUDA_VISIBLE_DEVICES=${VICO_SLOT} train x");
  const again = templateJobList(
    (await loadTemplateRun(["CUDA_VISIBLE_DEVICES={%}", "train", "{}", ":::", "x"], {})).run,
  );
  assert.equal(jobKey(identityOf(again.list, 0), 1), jobKey(identityOf(list, 0), 1));
});

Deno.test("templateJobList: a CRLF file's line endings end its lines, as in a job list; its arguments arrive without the CR", async () => {
  const { run, specs } = await loadTemplateRun(["echo", "::::", "-"], { stdin: stdinOf("ok\r\nfine\n") });
  const made = templateJobList(run, {}, specs);
  assert.deepEqual(made.list.commands, ["echo ok", "echo fine"]);
  assert.deepEqual(made.refused, []);
});

Deno.test("templateJobList: a carriage return inside an argument leaves that job out alone, named; one in the template refuses the run", async () => {
  const { run, specs } = await loadTemplateRun(["echo", ":::", "a", "b\rc", "d"], {});
  const made = templateJobList(run, {}, specs);
  assert.deepEqual(made.list.commands, ["echo a", "echo d"]);
  assert.deepEqual([...made.list.lines], [1, 3]);
  assert.deepEqual(made.refused, [{ seq: 2, origin: "source 1 argument 2", reason: "job contains a line break" }]);
  // In the template's own words it is in every job: the run is refused, naming the first.
  const bad = await loadTemplateRun(["echo a\recho", "{}", ":::", "x"], {});
  assert.throws(
    () => templateJobList(bad.run, {}, bad.specs),
    (e) =>
      e instanceof VicoError && e.code === "JOB_LIST_INVALID" && e.message.startsWith("job 1 (source 1 argument 1): "),
  );
});

Deno.test("templateJobList: a job too long for a protocol line is left out alone, named with its origin; the rest run", async () => {
  const long = await loadTemplateRun(["echo", ":::", "x", "y".repeat(200), "z"], {});
  const made = templateJobList(long.run, { maxLineBytes: 100 }, long.specs);
  assert.deepEqual(made.list.commands, ["echo x", "echo z"]);
  assert.deepEqual([...made.list.lines], [1, 3], "list job i is still seq lines[i]");
  assert.equal(made.jobs.length, 3);
  assert.deepEqual(made.refused.map((r) => [r.seq, r.origin]), [[2, "source 1 argument 2"]]);
  assert.match(made.refused[0].reason, /too long for a 100-byte protocol line/);
});
