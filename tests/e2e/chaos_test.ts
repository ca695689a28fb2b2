/**
 * Chaos: one list run twice across 4 persistent (`--persist`) runners.
 *
 * Run 1, with `--retries 2`, while:
 * - random runners are killed with SIGKILL (every 1-2 s) and restarted, as a
 *   service manager would, on the same state directory;
 * - a runner is paused (SIGSTOP) past its pulses and its lease, so that its
 *   jobs go to others, and then continued (SIGCONT);
 * - the manager is killed with SIGKILL twice, each time while a large
 *   output (3 MiB) is being received if one comes within a few seconds, and
 *   restarted on the same results directory;
 * - a fraction of the jobs exit 3 at once (chosen by their content), so
 *   that the black-hole rule holds quarantine suspects back, and retries
 *   them;
 * - near the end a runner is paused with jobs running and left paused until
 *   the run is over: the results of those jobs, which others ran meanwhile,
 *   are kept in its state directory for a manager that is gone.
 *
 * Run 2: `--fresh` on the same results path, same list, same runners (still
 * running): the results kept from run 1 are set aside, not recorded.
 *
 * Each job prints the nonce of its run (read from a file the test rewrites
 * between the runs), so an output produced for run 1 cannot pass for one
 * of run 2. Then, for each run: every job is recorded exactly once (one
 * `job` record per key), every output is byte-exact, `manager verify`
 * agrees; in run 1, no job that was running on a live runner while the
 * manager was down ran again; in run 2, every record is of the run's own
 * hand-outs, and every result kept from run 1 is in `set-aside/`.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { EntryProcess, freePort } from "../helpers/entry_process.ts";
import { byLine, readJournal, readOutput, readRecords, tempDir } from "../helpers/journal.ts";
import { type KeptResult, keptResults, runningJobCount, setAsideResults } from "../helpers/runner_state_dir.ts";
import type { AttemptRecord, JobRecord, RunRecord } from "../../manager/results/results_store.ts";

const JOBS = Number(Deno.env.get("VICO_CHAOS_JOBS") ?? "800");
const RUNNERS = 4;
const PULSE_S = 1;
const LEASE_S = 5;
/** A pause past three missed pulses and the lease: the paused runner's jobs go to others. */
const STOP_MS = (3 * PULSE_S + LEASE_S) * 1000 + 2000;
/** The output of a large job: a kill of the manager often lands while one is being received. */
const BIG = 3 * 1024 * 1024;
const RETRIES = 2;
/** How long after a manager restart its runners have to reclaim their jobs (its lease), and a margin. */
const RECLAIM_MS = LEASE_S * 1000 + 2000;
const dec = new TextDecoder();

type Kind = "ok" | "big" | "fail";

/** What job `i` does: its kind is written in its command, so it is the same on every runner and in every run. */
function kindOf(i: number): Kind {
  if (i % 40 === 7) return "big";
  if (i % 9 === 4) return "fail";
  return "ok";
}

const pad = (i: number) => String(i).padStart(5, "0");

/** Job `i`'s command line (the same in both runs: only the nonce file changes). */
function commandOf(i: number, nonceFile: string, marks: string): string {
  const read = `n=$(cat ${nonceFile}); `;
  if (kindOf(i) === "fail") return `${read}printf 'fail-%05d %s\\n' ${i} "$n"; exit 3`;
  const mark = (what: string) => `echo "${what} $n $VICO_TAG $(date +%s%N)" >> ${marks}/${i}`;
  const big = kindOf(i) === "big" ? `yes big-${pad(i)} | head -c ${BIG}; ` : "";
  return `${read}${mark("start")}; sleep 0.0${2 + i % 8}; ` +
    `printf 'out-%05d-%s %s\\n' ${i} "$(seq -s, 1 ${i % 7})" "$n"; ${big}${mark("end")}`;
}

/** Job `i`'s output in the run whose nonce is `nonce`. */
function expectedOutput(i: number, nonce: string): string {
  if (kindOf(i) === "fail") return `fail-${pad(i)} ${nonce}\n`;
  const seq = Array.from({ length: i % 7 }, (_, k) => k + 1).join(",");
  const head = `out-${pad(i)}-${seq} ${nonce}\n`;
  if (kindOf(i) !== "big") return head;
  const unit = `big-${pad(i)}\n`;
  return head + unit.repeat(Math.ceil(BIG / unit.length)).slice(0, BIG);
}

interface Attempt {
  tag: string;
  start: number;
  end?: number;
}

/** Reads a job's start/end marks in the run of `nonce`: one attempt per start. */
function attemptsOf(marks: string, i: number, nonce: string): Attempt[] {
  let text = "";
  try {
    text = Deno.readTextFileSync(join(marks, String(i)));
  } catch {
    return [];
  }
  const attempts: Attempt[] = [];
  for (const line of text.split("\n")) {
    const [what, n, tag, ns] = line.split(" ");
    if (n !== nonce) continue;
    if (what === "start") attempts.push({ tag, start: Number(ns) / 1e6 });
    if (what === "end") {
      const open = attempts.findLast((a) => a.tag === tag && a.end === undefined);
      if (open) open.end = Number(ns) / 1e6;
    }
  }
  return attempts;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Checks one run's results directory; returns its journal's job and attempt records. */
async function checkRun(
  results: string,
  nonce: string,
  spawn: (entry: string, args: string[]) => EntryProcess,
  run: string,
): Promise<{ records: JobRecord[]; attempts: AttemptRecord[]; runs: RunRecord[] }> {
  const journal = readJournal(results);
  const records = readRecords(results);
  const attempts = journal.filter((r): r is AttemptRecord => r.type === "attempt");
  const runs = journal.filter((r): r is RunRecord => r.type === "run");
  // Every job recorded exactly once: one job record per key, one per line.
  assert.equal(records.length, JOBS, `${run}: one record per job`);
  assert.equal(new Set(records.map((r) => r.key)).size, JOBS, `${run}: one job record per key`);
  const recs = byLine(records);
  for (let i = 0; i < JOBS; i++) {
    const r = recs.get(i + 1)!;
    assert.ok(r, `${run}: job ${i} is recorded`);
    assert.equal(r.status, kindOf(i) === "fail" ? 3 : 0, `${run}: job ${i} status (${JSON.stringify(r)})`);
    const out = dec.decode(readOutput(results, r));
    assert.ok(out === expectedOutput(i, nonce), `${run}: job ${i} output: ${JSON.stringify(out.slice(0, 80))}`);
    if (kindOf(i) === "fail") {
      // --retries 2: two failed attempts kept (more if suspects were run again elsewhere), each byte-exact.
      const failed = attempts.filter((a) => a.key === r.key && a.status === 3);
      assert.ok(failed.length >= RETRIES, `${run}: job ${i} was tried ${RETRIES} more times`);
      for (const a of failed) {
        const bytes = a.output === null ? new Uint8Array() : Deno.readFileSync(join(results, a.output));
        assert.equal(dec.decode(bytes), expectedOutput(i, nonce), `${run}: job ${i} attempt ${a.attempt} output`);
      }
      assert.equal(new Set(failed.map((a) => a.attempt)).size, failed.length, `${run}: job ${i} attempt numbers`);
    }
  }
  const verify = spawn("manager.ts", ["verify", results]);
  assert.equal((await verify.exit()).code, 0, `${run}: manager verify: ${verify.stdout}${verify.stderr}`);
  return { records, attempts, runs };
}

Deno.test({
  name: `chaos: ${JOBS} jobs twice (--fresh), runners paused and killed, the manager killed mid-transfer, ` +
    `fast failures retried: every job recorded once, byte-exact, no stale result`,
  async fn() {
    await using dir = await tempDir();
    const marks = join(dir.path, "marks");
    await Deno.mkdir(marks);
    const nonceFile = join(dir.path, "nonce");
    const nonces = [crypto.randomUUID().slice(0, 8), crypto.randomUUID().slice(0, 8)];
    await Deno.writeTextFile(nonceFile, nonces[0]);
    const list = join(dir.path, "jobs.txt");
    await Deno.writeTextFile(
      list,
      Array.from({ length: JOBS }, (_, i) => commandOf(i, nonceFile, marks)).join("\n") + "\n",
    );
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
      `${PULSE_S}s`,
      "--lease",
      `${LEASE_S}s`,
      "--max-attempts",
      "1000",
      "--retries",
      String(RETRIES),
      "--transfer-timeout",
      "3s",
      // The retries of the failing jobs come last, all failing fast: at the tail every runner gets a streak, and
      // the black-hole rule can quarantine the whole (healthy) fleet at once. A short quarantine keeps that a
      // delay of seconds (with the default, 1 minute, the run stalls), while its paths (suspects requeued) run.
      "--quarantine",
      "2s",
    ];
    const processes: EntryProcess[] = [];
    const spawn = (entry: string, args: string[], env?: Record<string, string>) => {
      const p = EntryProcess.spawn(entry, args, env ? { env } : {});
      processes.push(p);
      return p;
    };
    const stateOf = (tag: string) => join(dir.path, `state-${tag}`);
    const runners = new Map<string, EntryProcess>();
    const spawnRunner = (tag: string) => {
      runners.set(
        tag,
        spawn("runner.ts", [
          "--manager",
          `127.0.0.1:${port}`,
          "--workers",
          "4",
          "--name",
          tag,
          "--persist",
          "--state-dir",
          stateOf(tag),
          "--retry-max",
          "1s",
        ], { VICO_TAG: tag }),
      );
    };
    const tags = Array.from({ length: RUNNERS }, (_, i) => `r${i}`);
    const runnerKills: { tag: string; at: number }[] = [];
    const stops: { tag: string; from: number; to?: number; untilEnd: boolean }[] = [];
    const stopped = (tag: string) => stops.some((s) => s.tag === tag && s.to === undefined);
    const managerDown: { from: number; to: number; midTransfer: boolean }[] = [];
    try {
      // ---------------------------------------------------------------- run 1
      const managers: EntryProcess[] = [];
      const spawnManager = (args: string[]) => {
        const m = spawn("manager.ts", args);
        managers.push(m);
        return m;
      };
      let manager = spawnManager(managerArgs);
      await manager.waitFor(/Serving \d+ job/);
      for (const tag of tags) spawnRunner(tag);
      const settled = () => {
        try {
          return readRecords(results).length;
        } catch {
          return 0;
        }
      };
      /** Whether a large output is streaming into the results directory's tmp/ now. */
      const receivingBig = () => {
        try {
          for (const e of Deno.readDirSync(join(results, "tmp"))) {
            if (!e.name.endsWith(".part")) continue;
            const size = Deno.statSync(join(results, "tmp", e.name)).size;
            if (size >= 64 * 1024 && size < BIG) return true;
          }
        } catch {
          // Gone meanwhile.
        }
        return false;
      };
      const t0 = performance.now();
      let nextRunnerKill = performance.now() + 1000;
      // The run is over when the manager ends by itself (not by our SIGKILL), whatever its exit status.
      let done = false;
      const finished = (m: EntryProcess) => m.exit(120_000).then((s) => (done = s.signal === null, s));
      let ending = finished(manager);
      while (!done) {
        await Promise.race([ending, sleep(100)]);
        if (done) break;
        const progress = settled() / JOBS;
        // A paused runner comes back once it is past its pulses and its lease.
        for (const s of stops) {
          if (s.to === undefined && !s.untilEnd && Date.now() - s.from >= STOP_MS) {
            runners.get(s.tag)!.kill("SIGCONT");
            s.to = Date.now();
          }
        }
        // The manager dies twice, at about 30 % and 60 %: while a large output is being received, if one comes soon.
        if (managerDown.length < 2 && progress >= (managerDown.length === 0 ? 0.3 : 0.6)) {
          const watchUntil = performance.now() + 4000;
          let midTransfer = false;
          while (!(midTransfer = receivingBig()) && performance.now() < watchUntil) await sleep(2);
          const from = Date.now();
          manager.kill("SIGKILL");
          await ending;
          await sleep(800);
          manager = spawnManager(managerArgs);
          managerDown.push({ from, to: Date.now(), midTransfer });
          done = false;
          ending = finished(manager);
          continue;
        }
        // A runner busy with jobs is paused past its lease at about 10 %, and another one at 80 % until the run ends.
        const busiest = () =>
          tags.filter((t) => !stopped(t)).map((t) => ({ t, n: runningJobCount(stateOf(t), runners.get(t)!.pid) }))
            .sort((a, b) => b.n - a.n)[0];
        const wantStop = stops.length === 0 ? progress >= 0.1 : stops.length === 1 && progress >= 0.8;
        if (wantStop) {
          const pick = busiest();
          if (pick !== undefined && pick.n > 0) {
            runners.get(pick.t)!.kill("SIGSTOP");
            stops.push({ tag: pick.t, from: Date.now(), untilEnd: stops.length === 1 });
          }
        }
        // A random runner (not paused) dies every 1-2 s and comes back half a second later. While the runners
        // reclaim their jobs from a restarted manager (its lease), r0 and r1 are spared, so that they are seen to.
        const reclaiming = managerDown.some((d) => Date.now() < d.to + RECLAIM_MS);
        const live = tags.filter((t) => !stopped(t) && !(reclaiming && (t === "r0" || t === "r1")));
        if (performance.now() > nextRunnerKill && progress < 0.75 && live.length > 0) {
          const tag = live[Math.floor(Math.random() * live.length)];
          runners.get(tag)!.kill("SIGKILL");
          runnerKills.push({ tag, at: Date.now() });
          await runners.get(tag)!.exit();
          await sleep(500);
          spawnRunner(tag);
          nextRunnerKill = performance.now() + 1000 + Math.random() * 1000;
        }
      }
      const last = await ending;
      assert.equal(last.code, 1, `exit 1: some jobs failed (exit 3); stderr:\n${manager.stderr}`);
      const quarantines = () => managers.reduce((n, m) => n + (m.stderr.match(/Quarantined /g) ?? []).length, 0);
      const run1Seconds = (performance.now() - t0) / 1000;
      assert.equal(managerDown.length, 2, "the manager was killed twice");
      assert.ok(runnerKills.length >= 2, `runners were killed ${runnerKills.length} times`);
      assert.equal(stops.length, 2, "two runners were paused");
      const endStop = stops[1];
      assert.ok(stops[0].to !== undefined && stops[0].to - stops[0].from >= STOP_MS, "the first pause was continued");
      assert.equal(endStop.to, undefined, "the second paused runner is still paused");

      const one = await checkRun(results, nonces[0], spawn, "run 1");
      const suspects = one.attempts.filter((a) => a.suspect === true).length;
      assert.ok(suspects > 0, "the black-hole rule held fast failures back as suspects");
      const run1Ids = new Set(one.runs.map((r) => r.id));
      assert.equal(run1Ids.size, 3, "three manager lives, each with a run identity");

      // A job running on a runner that lived (and was not paused) while the manager was down was not run again.
      const disturbed = (tag: string, from: number, to: number) =>
        runnerKills.some((k) => k.tag === tag && k.at >= from && k.at <= to) ||
        stops.some((s) => s.tag === tag && s.from <= to && (s.to ?? Infinity) >= from);
      let checked = 0;
      for (let i = 0; i < JOBS; i++) {
        if (kindOf(i) === "fail") continue; // run again on purpose (--retries)
        const attempts = attemptsOf(marks, i, nonces[0]);
        assert.ok(attempts.length >= 1, `job ${i} ran`);
        for (const down of managerDown) {
          for (const a of attempts) {
            const runningThen = a.start < down.from && (a.end === undefined || a.end > down.from);
            if (!runningThen || a.end === undefined) continue;
            // Its runner must have lived, unpaused, to reclaim the job from the restarted manager and deliver it.
            if (disturbed(a.tag, a.start, Math.max(a.end, down.to + RECLAIM_MS))) continue;
            checked++;
            const later = attempts.filter((b) => b !== a && b.start > a.start);
            assert.deepEqual(later, [], `job ${i} ran again after the manager restart: ${JSON.stringify(attempts)}`);
          }
        }
      }
      console.log(
        `chaos run 1: ${JOBS} jobs in ${run1Seconds.toFixed(1)}s; ${runnerKills.length} runner kill(s), ` +
          `2 manager kills (${managerDown.filter((d) => d.midTransfer).length} mid-transfer), 2 pauses; ` +
          `${suspects} suspect(s) held, ${one.attempts.length} attempt record(s); ` +
          `${checked} job(s) were running on live runners while the manager was down, none ran again; ` +
          `${quarantines()} quarantine(s)`,
      );

      // The paused runner goes on: the jobs it had finish, for a manager that is gone, and are kept.
      runners.get(endStop.tag)!.kill("SIGCONT");
      endStop.to = Date.now();
      const kept = () => tags.map((t) => keptResults(stateOf(t)).map((k) => ({ ...k, tag: t }))).flat();
      const quiet = () => tags.every((t) => runningJobCount(stateOf(t)) === 0);
      let snapshot: (KeptResult & { tag: string })[] = [];
      for (const deadline = Date.now() + 20_000; Date.now() < deadline; await sleep(100)) {
        if (!quiet() || !kept().some((k) => k.tag === endStop.tag)) continue;
        // Settled for a second: nothing running, nothing more kept.
        const before = JSON.stringify(kept());
        await sleep(1000);
        if (quiet() && JSON.stringify(kept()) === before) {
          snapshot = kept();
          break;
        }
      }
      assert.ok(
        snapshot.some((k) => k.tag === endStop.tag),
        `the runner paused to the end keeps results of run 1: ${JSON.stringify(kept())}; ` +
          `pauses ${JSON.stringify(stops)}, kills ${JSON.stringify(runnerKills)}; its log:\n` +
          runners.get(endStop.tag)!.stderr.slice(-4000),
      );
      for (const k of snapshot) {
        assert.ok(k.run !== undefined && run1Ids.has(k.run), `a kept result is of run 1: ${JSON.stringify(k)}`);
      }

      // ---------------------------------------------------------------- run 2
      await Deno.writeTextFile(nonceFile, nonces[1]);
      const t2 = Date.now();
      const fresh = spawnManager([...managerArgs, "--fresh"]);
      const freshStatus = await fresh.exit(60_000);
      assert.equal(freshStatus.code, 1, `exit 1: some jobs failed (exit 3); stderr:\n${fresh.stderr}`);
      const run2Seconds = (Date.now() - t2) / 1000;

      // Run 1's directory was moved aside, untouched.
      const aside = [...Deno.readDirSync(dir.path)].filter((e) => e.name.startsWith("res.")).map((e) => e.name);
      assert.equal(aside.length, 1, `run 1's results were moved aside: ${aside}`);
      assert.equal(readRecords(join(dir.path, aside[0])).length, JOBS, "run 1's records are where they were");
      const verifyAside = spawn("manager.ts", ["verify", join(dir.path, aside[0])]);
      assert.equal((await verifyAside.exit()).code, 0, verifyAside.stdout);

      const two = await checkRun(results, nonces[1], spawn, "run 2");
      assert.equal(two.runs.length, 1, "one run in the fresh directory");
      assert.ok(!run1Ids.has(two.runs[0].id), "the fresh run has an identity of its own");
      for (const r of two.records) {
        assert.ok(Date.parse(r.start) >= t2, `run 2: job at line ${r.line} was handed out before the run: ${r.start}`);
      }

      // What run 1 left kept on the runners was set aside, not recorded, not kept for ever.
      let missing: (KeptResult & { tag: string })[] = [];
      for (const deadline = Date.now() + 5000; Date.now() < deadline; await sleep(100)) {
        missing = snapshot.filter((k) =>
          keptResults(stateOf(k.tag)).some((p) => p.name === k.name) ||
          !setAsideResults(stateOf(k.tag)).some((s) =>
            s.name === k.name && s.command === k.command && /did not take it back/.test(s.reason ?? "")
          )
        );
        if (missing.length === 0) break;
      }
      assert.deepEqual(missing, [], "every result kept from run 1 is in set-aside/");
      console.log(
        `chaos run 2 (--fresh): ${JOBS} jobs in ${run2Seconds.toFixed(1)}s; ` +
          `${snapshot.length} result(s) kept from run 1 set aside; ` +
          `${
            two.attempts.filter((a) => a.suspect === true).length
          } suspect(s) held; ${quarantines()} quarantine(s) in all`,
      );
    } finally {
      for (const p of processes) p.kill("SIGKILL");
      for (const p of processes) await p.exit().catch(() => {});
    }
  },
});
