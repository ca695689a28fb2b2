import assert from "node:assert/strict";
import { VicoError } from "../../core/errors.ts";
import { parseJobList } from "../../manager/jobs/job_list.ts";
import { Manager } from "../../manager/manager.ts";
import { ResultsDirError } from "../../manager/results/results_dir.ts";

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

Deno.test("Manager.start() local: text workers run in-process through the factory's executor, no connection, no node", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const jobs = parseJobList(new TextEncoder().encode("echo one\necho two\necho three\n"));
    const slots: number[] = [];
    let closed = false;
    const manager = await Manager.start({
      jobs,
      resultsDir: `${dir}/res`,
      port: 0,
      local: 2,
      localWorkers: {
        openJobs: () =>
          Promise.resolve({
            run: (spec) => {
              slots.push(spec.slot);
              const bytes = new TextEncoder().encode(`${spec.command}\n`);
              return Promise.resolve({
                status: 0,
                timedOut: false,
                stopSignal: false,
                output: { size: bytes.length, pipeTo: (sink) => sink(bytes), dispose: () => Promise.resolve() },
              });
            },
            close: () => Promise.resolve(void (closed = true)),
          }),
        node: () => {
          throw new Error("a text list needs no node");
        },
      },
    });
    const hosts = new Set<string>();
    const summary = await manager.finished;
    for (const [host] of manager.settledByHost()) hosts.add(host);
    assert.equal(summary.succeeded, 3);
    assert.ok([...hosts].every((h) => h === "local-1" || h === "local-2"), [...hosts].join());
    assert.ok(slots.every((s) => s === 1 || s === 2));
    assert.ok(closed, "the executor is closed once the workers are done");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("Manager.start() defaultResults: another list's directory is refused (REFUSED, another-list) untouched and let go; the owner and a named one start", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const resultsDir = `${dir}/jobs.results`;
    const list = (source: string) => parseJobList(new TextEncoder().encode("echo one\n"), { source });
    const run = async (source: string, defaultResults: boolean) => {
      const manager = await Manager.start({ jobs: list(source), resultsDir, port: 0, defaultResults });
      manager.close();
      await manager.finished;
    };
    await run("jobs.txt", true);
    const journal = await Deno.readTextFile(`${resultsDir}/journal.jsonl`);
    for (const fresh of [false, true]) {
      await assert.rejects(
        () => Manager.start({ jobs: list("jobs.jsonl"), resultsDir, port: 0, defaultResults: true, fresh }),
        (err) => err instanceof ResultsDirError && err.code === "REFUSED" && err.problem === "another-list",
      );
      assert.equal(await Deno.readTextFile(`${resultsDir}/journal.jsonl`), journal, "nothing recorded");
      assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["jobs.results"], "nothing moved aside");
    }
    // Let go: the owning list (by another path) starts on it, and so does another list told to share it.
    await run(`${dir}/jobs.txt`, true);
    await run("jobs.jsonl", false);
    const sources = (await Deno.readTextFile(`${resultsDir}/journal.jsonl`)).trim().split("\n").map((l) =>
      JSON.parse(l)
    ).filter((r) => r.type === "run").map((r) => r.source);
    assert.deepEqual(sources, ["jobs.txt", `${dir}/jobs.txt`, "jobs.jsonl"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("Manager.start with a stopSignal aborted while it started: no job goes out, not even to local workers", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const ran: string[] = [];
    const stop = new AbortController();
    stop.abort();
    const manager = await Manager.start({
      jobs: parseJobList(new TextEncoder().encode("echo one\necho two\n")),
      resultsDir: `${dir}/results`,
      local: 2,
      serveRunners: false,
      stopSignal: stop.signal,
      localWorkers: {
        openJobs: () =>
          Promise.resolve({
            run: (spec) => {
              ran.push(spec.command);
              return Promise.resolve({
                status: 0,
                timedOut: false,
                stopSignal: false,
                output: { size: 0, pipeTo: () => Promise.resolve(), dispose: () => Promise.resolve() },
              });
            },
            close: () => Promise.resolve(),
          }),
        node: () => {
          throw new Error("a text list needs no node");
        },
      },
    });
    const summary = await manager.finished;
    assert.equal(summary.unsettled, 2);
    assert.equal(summary.stopped, true);
    assert.deepEqual(ran, [], "no job ran");
    assert.equal(manager.address.hostname, "memory", "serveRunners: false opens no port");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
