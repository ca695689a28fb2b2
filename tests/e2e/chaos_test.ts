/**
 * Chaos: 2,000 jobs across 4 persistent runners while random runners are
 * killed with SIGKILL (and restarted, as a service manager would, on the
 * same state directory) and the manager is killed with SIGKILL twice and
 * restarted on the same results directory.
 *
 * Then: every job is recorded exactly once, every output is byte-exact,
 * `manager verify` agrees, and no job that was running on a surviving
 * runner while the manager was down ran again.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { EntryProcess, freePort } from "../helpers/entry_process.ts";
import { byLine, readOutput, readRecords, tempDir } from "../helpers/journal.ts";

const JOBS = Number(Deno.env.get("VICO_CHAOS_JOBS") ?? "2000");
const RUNNERS = 4;
const dec = new TextDecoder();

function expectedOutput(i: number): string {
  const seq = Array.from({ length: i % 7 }, (_, k) => k + 1).join(",");
  return `out-${String(i).padStart(5, "0")}-${seq}\n`;
}

interface Attempt {
  tag: string;
  start: number;
  end?: number;
}

/** Reads a job's start/end marks: one attempt per start. */
function attemptsOf(marks: string, i: number): Attempt[] {
  let text = "";
  try {
    text = Deno.readTextFileSync(join(marks, String(i)));
  } catch {
    return [];
  }
  const attempts: Attempt[] = [];
  for (const line of text.split("\n")) {
    const [what, tag, ns] = line.split(" ");
    if (what === "start") attempts.push({ tag, start: Number(ns) / 1e6 });
    if (what === "end") {
      const open = attempts.findLast((a) => a.tag === tag && a.end === undefined);
      if (open) open.end = Number(ns) / 1e6;
    }
  }
  return attempts;
}

Deno.test({
  name: `chaos: ${JOBS} jobs, runners and the manager killed (SIGKILL), every job recorded once and byte-exact`,
  async fn() {
    await using dir = await tempDir();
    const marks = join(dir.path, "marks");
    await Deno.mkdir(marks);
    const list = join(dir.path, "jobs.txt");
    const lines = Array.from(
      { length: JOBS },
      (_, i) =>
        `echo "start $VICO_TAG $(date +%s%N)" >> ${marks}/${i}; sleep 0.0${2 + i % 8}; ` +
        `printf 'out-%05d-%s\\n' ${i} "$(seq -s, 1 ${i % 7})"; echo "end $VICO_TAG $(date +%s%N)" >> ${marks}/${i}`,
    );
    await Deno.writeTextFile(list, lines.join("\n"));
    const results = join(dir.path, "res");
    const port = freePort();
    const managerArgs = [
      "--jobs",
      list,
      "--results",
      results,
      "--port",
      String(port),
      "--pulse",
      "1s",
      "--lease",
      "60s",
      "--max-attempts",
      "1000",
    ];
    const processes: EntryProcess[] = [];
    const spawnManager = () => {
      const m = EntryProcess.spawn("manager.ts", managerArgs);
      processes.push(m);
      return m;
    };
    const runnerKills: { tag: string; at: number }[] = [];
    const managerDown: { from: number; to: number }[] = [];
    const runners = new Map<string, EntryProcess>();
    const spawnRunner = (tag: string) => {
      const r = EntryProcess.spawn("runner.ts", [
        "--manager",
        `127.0.0.1:${port}`,
        "--workers",
        "4",
        "--name",
        tag,
        "--persist",
        "--state-dir",
        join(dir.path, `state-${tag}`),
        "--retry-max",
        "1s",
      ], { env: { VICO_TAG: tag } });
      processes.push(r);
      runners.set(tag, r);
    };
    try {
      let manager = spawnManager();
      await manager.waitFor(/Serving \d+ job/);
      for (let i = 0; i < RUNNERS; i++) spawnRunner(`r${i}`);
      const settled = () => {
        try {
          return readRecords(results).length;
        } catch {
          return 0;
        }
      };
      const t0 = performance.now();
      let managerKills = 0;
      let nextRunnerKill = performance.now() + 1500;
      let done = false;
      const finished = (m: EntryProcess) => m.exit(600_000).then((s) => (done = s.code === 0, s));
      let ending = finished(manager);
      while (!done) {
        await Promise.race([ending, new Promise((r) => setTimeout(r, 100))]);
        if (done) break;
        const progress = settled() / JOBS;
        // The manager dies twice: at about 30 % and 60 %.
        if (managerKills < 2 && progress >= (managerKills === 0 ? 0.3 : 0.6)) {
          managerKills++;
          const from = Date.now();
          manager.kill("SIGKILL");
          await ending;
          await new Promise((r) => setTimeout(r, 800));
          manager = spawnManager();
          managerDown.push({ from, to: Date.now() });
          done = false;
          ending = finished(manager);
          continue;
        }
        // A random runner dies every 1.5-3 s and comes back half a second later.
        if (performance.now() > nextRunnerKill && progress < 0.95) {
          const tag = `r${Math.floor(Math.random() * RUNNERS)}`;
          runners.get(tag)!.kill("SIGKILL");
          runnerKills.push({ tag, at: Date.now() });
          await runners.get(tag)!.exit();
          await new Promise((r) => setTimeout(r, 500));
          spawnRunner(tag);
          nextRunnerKill = performance.now() + 1500 + Math.random() * 1500;
        }
      }
      const last = await ending;
      assert.equal(last.code, 0, manager.stderr);
      assert.equal(managerKills, 2, "the manager was killed twice");
      assert.ok(runnerKills.length >= 2, `runners were killed ${runnerKills.length} times`);
      console.log(
        `chaos: ${JOBS} jobs in ${((performance.now() - t0) / 1000).toFixed(1)}s; ` +
          `${runnerKills.length} runner kill(s), 2 manager kills`,
      );

      // Every job recorded exactly once, byte-exact.
      const records = readRecords(results);
      assert.equal(records.length, JOBS, "one record per job");
      const recs = byLine(records);
      for (let i = 0; i < JOBS; i++) {
        const r = recs.get(i + 1)!;
        assert.equal(r.status, 0, `job ${i}`);
        assert.equal(dec.decode(readOutput(results, r)), expectedOutput(i), `job ${i} output`);
      }
      const verify = EntryProcess.spawn("manager.ts", ["verify", results]);
      processes.push(verify);
      assert.equal((await verify.exit()).code, 0, verify.stdout);

      // A job running on a runner that survived while the manager was down
      // was not run again.
      const killedDuring = (tag: string, from: number, to: number) =>
        runnerKills.some((k) => k.tag === tag && k.at >= from && k.at <= to);
      let checked = 0;
      for (let i = 0; i < JOBS; i++) {
        const attempts = attemptsOf(marks, i);
        assert.ok(attempts.length >= 1, `job ${i} ran`);
        for (const down of managerDown) {
          for (const a of attempts) {
            const runningThen = a.start < down.from && (a.end === undefined || a.end > down.from);
            if (!runningThen || a.end === undefined) continue;
            // Its runner must have lived to deliver the result after the restart.
            if (killedDuring(a.tag, a.start, down.to + 10_000)) continue;
            checked++;
            const later = attempts.filter((b) => b !== a && b.start > a.start);
            assert.deepEqual(later, [], `job ${i} ran again after the manager restart: ${JSON.stringify(attempts)}`);
          }
        }
      }
      console.log(`chaos: ${checked} job(s) were running on live runners while the manager was down; none ran again`);
    } finally {
      for (const p of processes) p.kill("SIGKILL");
      for (const p of processes) await p.exit().catch(() => {});
    }
  },
});
