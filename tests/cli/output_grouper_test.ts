import assert from "node:assert/strict";
import { compileTemplate, expandJobs, parseTemplateArgs, readSources } from "../../cli/command_template.ts";
import { LineTagger, OutputGrouper, parallelTag } from "../../cli/output_grouper.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const tick = () => new Promise((resolve) => setTimeout(resolve, 0));

/** Stored outputs in memory, handed out in small chunks with pauses between, and who was read when. */
function storedOutputs(outputs: Record<number, string>, chunk = 3) {
  const reads: number[] = [];
  const stored = (seq: number) => {
    reads.push(seq);
    return (async function* () {
      const bytes = encoder.encode(outputs[seq]);
      for (let at = 0; at < bytes.length; at += chunk) {
        await tick();
        yield bytes.slice(at, at + chunk);
      }
    })();
  };
  return { stored, reads };
}

function collector() {
  const writes: string[] = [];
  return {
    writes,
    text: () => writes.join(""),
    write: async (bytes: Uint8Array) => {
      await tick();
      writes.push(decoder.decode(bytes));
    },
  };
}

Deno.test("OutputGrouper: outputs of jobs ending together are printed whole, never interleaved", async () => {
  const outputs: Record<number, string> = {};
  for (let seq = 1; seq <= 20; seq++) outputs[seq] = `job ${seq} line 1\njob ${seq} line 2\njob ${seq} line 3\n`;
  const { stored } = storedOutputs(outputs, 5);
  const out = collector();
  const grouper = new OutputGrouper({ write: out.write, stored });
  const order = [5, 3, 1, 20, 2, 4, 19, 6, 7, 8, 18, 9, 10, 11, 17, 12, 13, 14, 16, 15];
  await Promise.all(order.map((seq) => grouper.finished(seq)));
  await grouper.end();
  assert.equal(out.text(), order.map((seq) => outputs[seq]).join(""));
});

Deno.test("OutputGrouper: keep order prints in list order and reads a job's stored output only at its turn", async () => {
  const outputs = { 1: "one\n", 2: "two\n", 3: "three\n", 4: "four\n" };
  const { stored, reads } = storedOutputs(outputs);
  const out = collector();
  const grouper = new OutputGrouper({ write: out.write, stored, keepOrder: true });
  await grouper.finished(3);
  await grouper.finished(4);
  assert.deepEqual(reads, [], "jobs 3 and 4 wait as numbers, their bytes unread");
  assert.equal(grouper.waiting, 2);
  await grouper.finished(2);
  assert.equal(out.text(), "");
  await grouper.finished(1);
  assert.equal(out.text(), "one\ntwo\nthree\nfour\n");
  assert.deepEqual(reads, [1, 2, 3, 4]);
  assert.equal(grouper.waiting, 0);
});

Deno.test("OutputGrouper: keep order, a skipped job does not hold back those after it", async () => {
  const { stored, reads } = storedOutputs({ 1: "one\n", 3: "three\n" });
  const out = collector();
  const grouper = new OutputGrouper({ write: out.write, stored, keepOrder: true });
  await grouper.finished(3);
  await grouper.skipped(2);
  await grouper.finished(1);
  assert.equal(out.text(), "one\nthree\n");
  assert.deepEqual(reads, [1, 3]);
});

Deno.test("OutputGrouper: keep order, end() prints what waits behind a job that never ended, in order", async () => {
  const { stored } = storedOutputs({ 2: "two\n", 4: "four\n", 5: "five\n" });
  const out = collector();
  const grouper = new OutputGrouper({ write: out.write, stored, keepOrder: true });
  await grouper.finished(5);
  await grouper.finished(2);
  await grouper.finished(4);
  assert.equal(out.text(), "");
  await grouper.end();
  assert.equal(out.text(), "two\nfour\nfive\n");
});

Deno.test("OutputGrouper: a failed read rejects that call, and later jobs still print", async () => {
  const out = collector();
  const grouper = new OutputGrouper({
    write: out.write,
    stored: (seq) =>
      (async function* () {
        if (seq === 1) throw new Error("gone");
        yield encoder.encode(`job ${seq}\n`);
      })(),
  });
  await assert.rejects(grouper.finished(1), /gone/);
  await grouper.finished(2);
  assert.equal(out.text(), "job 2\n");
});

Deno.test("OutputGrouper: tag prefixes every line, the last one without a newline too; no output, no tag", async () => {
  const outputs = { 1: "x\ny", 2: "", 3: "\n\nz\n", 4: "a\tb\n" };
  const { stored } = storedOutputs(outputs, 1);
  const out = collector();
  const tags: Record<number, string> = { 1: "a", 2: "b", 3: "c d", 4: "e" };
  const grouper = new OutputGrouper({ write: out.write, stored, keepOrder: true, tag: (seq) => tags[seq] });
  for (const seq of [4, 3, 2, 1]) await grouper.finished(seq);
  assert.equal(out.text(), "a\tx\na\tyc d\t\nc d\t\nc d\tz\ne\ta\tb\n");
});

Deno.test("LineTagger: any split of the stream gives the same tagged bytes", () => {
  const text = "l1\nline two\n\nlast";
  const whole = decoder.decode(new LineTagger(encoder.encode("T\t")).push(encoder.encode(text)));
  assert.equal(whole, "T\tl1\nT\tline two\nT\t\nT\tlast");
  for (let cut = 0; cut <= text.length; cut++) {
    const t = new LineTagger(encoder.encode("T\t"));
    const parts = [text.slice(0, cut), text.slice(cut)].map((s) => decoder.decode(t.push(encoder.encode(s))));
    assert.equal(parts.join(""), whole, `cut at ${cut}`);
  }
});

/** What `parallel --tag -k` printed for these jobs (20221122), recorded. */
const TAG_CASES: { argv: string[]; recorded: string }[] = [
  { argv: ["echo", ":::", "a", "b c", ":::", "1", "2"], recorded: "a 1\ta 1\na 2\ta 2\nb c 1\tb c 1\nb c 2\tb c 2\n" },
  { argv: ["printf 'x\\ny'", ":::", "a", "it's"], recorded: "a\tx\na\tyit's\tx\nit's\ty" },
  { argv: ["true", ":::", "a"], recorded: "" },
  { argv: ["printf '\\n\\nz\\n'", ":::", "q"], recorded: "q\t\nq\t\nq\tz\n" },
];

async function has(program: string): Promise<boolean> {
  try {
    return (await new Deno.Command("sh", { args: ["-c", `command -v ${program}`], stdout: "null" }).output()).success;
  } catch {
    return false;
  }
}

Deno.test("OutputGrouper: --tag prints what Parallel's --tag -k prints", async () => {
  const parallel = await has("parallel");
  for (const c of TAG_CASES) {
    const args = parseTemplateArgs(c.argv);
    const { sources } = await readSources(args.sources, {});
    const jobs = [...expandJobs({ template: compileTemplate(args.command, sources.length), sources })];
    const stdout = new Map<number, Uint8Array>();
    for (const job of jobs) {
      stdout.set(job.seq, (await new Deno.Command("/bin/sh", { args: ["-c", job.command] }).output()).stdout);
    }
    const out = collector();
    const grouper = new OutputGrouper({
      write: out.write,
      stored: (seq) => ReadableStream.from([stdout.get(seq)!]),
      keepOrder: true,
      tag: (seq) => parallelTag(jobs[seq - 1].args),
    });
    for (const job of [...jobs].reverse()) await grouper.finished(job.seq);
    assert.equal(out.text(), c.recorded, c.argv.join(" "));
    if (parallel) {
      const p = await new Deno.Command("parallel", {
        args: ["--will-cite", "--tag", "-k", ...c.argv],
        env: { PARALLEL_SHELL: "/bin/sh" },
        stdin: "null",
      }).output();
      assert.equal(out.text(), decoder.decode(p.stdout), `against the installed parallel: ${c.argv.join(" ")}`);
    }
  }
});
