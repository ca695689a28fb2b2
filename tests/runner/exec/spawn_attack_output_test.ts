/**
 * Adversarial tests: where a job's output goes (escaped writers, reused
 * spool files, the output limit, exact bytes, bounded memory), both spawn
 * paths, real processes.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { runProcess, shellArgv } from "../../../runner/exec/process_runner.ts";
import { OutputLimitError, outputLimitNote } from "../../../runner/exec/output_limit.ts";
import { SpoolFiles } from "../../../runner/exec/output_spool.ts";
import { JobExecutor } from "../../../runner/exec/job_executor.ts";
import { killPids, rssBytes, runJob, runToFile, text, VIAS, withDir } from "./spawn_attack_helpers.ts";
import { ownProcessTest } from "../../helpers/own_process.ts";

for (const via of VIAS) {
  Deno.test(`attack: a background writer left by a job (in its group, or escaped by setsid) never reaches a later job's reused spool file (${via})`, async () => {
    await withDir(async (dir) => {
      const files = new SpoolFiles(dir);
      const escaped: number[] = [];
      try {
        const first = await runJob(
          files,
          // The escaped writer starts writing after the job's report (at most the grace, 300 ms, after its end).
          `(sleep 0.5; echo LATE-GROUP) & setsid sh -c 'sleep 1; for i in 1 2 3 4 5 6 7 8 9 10; do sleep 0.1; echo LATE-SETSID; done' & ` +
            `echo $! > ${dir}/escaped; sleep 0.1; echo first`,
          via,
          { killGraceMs: 300 },
        );
        escaped.push(Number(await Deno.readTextFile(join(dir, "escaped"))));
        assert.equal(first.outcome.status, 0);
        assert.equal(first.out, "first\n");
        // posix_spawn: at once (plus the grace at most, see the zombie test); Deno.Command: 100 ms quiet, at most the grace more.
        assert.ok(first.ms < 1000, `first job reported after ${first.ms} ms`);
        const bad: string[] = [];
        const until = performance.now() + 2500;
        let n = 0;
        const files_ = new Set<number>();
        const worker = async () => {
          while (performance.now() < until) {
            const i = n++;
            const job = await runJob(files, `echo job${i}; sleep 0.01; echo end${i}`, via, { killGraceMs: 300 });
            files_.add(job.inode);
            if (job.out !== `job${i}\nend${i}\n`) bad.push(`job ${i}: ${JSON.stringify(job.out)}`);
          }
        };
        await Promise.all([worker(), worker(), worker()]);
        assert.deepEqual(bad, [], "no later job's output holds what the first job's leftovers wrote");
        assert.ok(n > 20, `${n} jobs ran`);
        assert.ok(files_.size < n, "spool files were reused");
      } finally {
        killPids(escaped);
        await files.clear();
      }
    });
  });

  Deno.test({
    name:
      `attack: an escaped process that reopens its job's spool file by path later writes into a later job's output (${via})`,
    // Deno.Command: the job's stdout is a pipe, it never learns the spool file's path.
    ignore: via === "command",
    fn: async () => {
      // Caught failing (low severity: deliberate, and jobs share the runner's user): the write lease of
      // SpoolFiles.give() (runner/exec/output_spool.ts) is checked once, when the job's spool is disposed of; a
      // process that left the group and held no descriptor then, but knew the path (readlink /proc/$$/fd/1),
      // opened it again once a later job reused the file. A reused file now goes under a fresh name first.
      await withDir(async (dir) => {
        const files = new SpoolFiles(dir, 1);
        const escaped: number[] = [];
        try {
          const first = await runJob(
            files,
            `p=$(readlink /proc/$$/fd/1); setsid sh -c "exec >/dev/null 2>&1; sleep 0.5; echo LATE-INJECTED-BY-AN-ESCAPED-PROCESS >> $p" & ` +
              `echo $! > ${dir}/pid; sleep 0.1; echo first`,
            via,
            { killGraceMs: 100 },
          );
          escaped.push(Number(await Deno.readTextFile(join(dir, "pid"))));
          assert.equal(first.out, "first\n");
          const later = await runJob(files, "sleep 1; echo later", via);
          assert.notEqual(later.path, first.path, "reused under a fresh name");
          assert.equal(later.inode, first.inode, "the spool file was reused");
          assert.equal(later.out, "later\n");
        } finally {
          killPids(escaped);
          await files.clear();
        }
      });
    },
  });

  Deno.test(`attack: a fast writer past maxOutputBytes (yes, head -c 100M) is cut exactly at the limit, then the note (${via})`, async () => {
    for (const [command, unit] of [["yes", "y\n"], ["head -c 100000000 /dev/zero", "\0"]] as const) {
      await withDir(async (dir) => {
        const outputFile = join(dir, "out");
        const max = 1_000_000;
        const started = performance.now();
        await assert.rejects(
          runProcess(shellArgv(command), { outputFile, via, maxOutputBytes: max, killGraceMs: 300 }),
          OutputLimitError,
        );
        assert.ok(performance.now() - started < 3000, `${command}: ended after ${performance.now() - started} ms`);
        const out = await Deno.readFile(outputFile);
        const note = "\n" + outputLimitNote(max);
        assert.equal(out.length, max + note.length, `${command}: ${out.length} bytes kept`);
        assert.equal(text(out.subarray(max)), note);
        assert.equal(text(out.subarray(0, max)), unit.repeat(max / unit.length));
      });
    }
  });

  Deno.test(`attack: output that jumps past the limit between two polls (sparse 1 GB, one burst) is caught at the end and cut to the limit (${via})`, async () => {
    for (
      const command of [
        // A 1 GB hole in one syscall, on the job's own descriptor (posix_spawn: a file; Deno.Command: a pipe).
        ...(via === "posix_spawn" ? ["printf abc; truncate -s 1G /proc/self/fd/1; exit 0"] : []),
        // Through another open file description of the same file (reopened by its /proc path).
        "printf abc; head -c 3000000 /dev/zero >> /proc/self/fd/1",
      ]
    ) {
      await withDir(async (dir) => {
        const outputFile = join(dir, "out");
        await assert.rejects(
          runProcess(shellArgv(command), { outputFile, via, maxOutputBytes: 1000, killGraceMs: 300 }),
          OutputLimitError,
          command,
        );
        const out = await Deno.readFile(outputFile);
        assert.equal(out.length, 1000 + 1 + outputLimitNote(1000).length, `${command}: ${out.length} bytes`);
        assert.equal(text(out.subarray(0, 3)), "abc");
      });
    }
  });

  Deno.test(`attack: a job writing exactly maxOutputBytes in one burst is not killed (${via})`, async () => {
    const o = await runToFile(via, shellArgv("yes | head -c 1000000"), { maxOutputBytes: 1_000_000 });
    assert.equal(o.status, 0);
    assert.equal(o.out.length, 1_000_000);
    assert.equal(o.outputBytes, 1_000_000);
  });

  Deno.test(`attack: over the limit, a writer that escaped the group does not write past the cut and the note into a shared log (${via})`, async () => {
    // output_limit.ts: for an output file the job appends to (a binary task's log shared by its runs) "the
    // file may not grow past it". Caught failing through posix_spawn: the escaped writer shared the log's
    // open file description and went on writing after the cut. (A job's own spool file, held by such a
    // writer, is thrown away on the limit: JobExecutor keeps only the note.)
    await withDir(async (dir) => {
      const path = join(dir, "log");
      using log = await Deno.open(path, { write: true, createNew: true });
      await log.write(new TextEncoder().encode("x".repeat(100)));
      await assert.rejects(
        runProcess(
          shellArgv(
            `setsid sh -c 'sleep 0.3; for i in $(seq 50); do echo LATE; sleep 0.01; done' & echo $! > ${dir}/pid; ` +
              "head -c 5000 /dev/zero; sleep 30",
          ),
          { outputFile: log, via, maxOutputBytes: 1000, killGraceMs: 300 },
        ),
        OutputLimitError,
      );
      const escaped = Number(await Deno.readTextFile(join(dir, "pid")));
      try {
        await new Promise((r) => setTimeout(r, 1200));
        const out = await Deno.readFile(path);
        assert.equal(text(out.subarray(1000)), "\n" + outputLimitNote(1000), `${out.length} bytes in the file`);
        assert.equal(text(out.subarray(0, 100)), "x".repeat(100), "what the log held before is kept");
      } finally {
        killPids([escaped]);
      }
    });
  });

  Deno.test(`attack: over the limit, a writer that escaped the group and writes all the time gets nothing between the cut and the note of a shared log (${via})`, async () => {
    // Caught failing through posix_spawn (a fresh CI clone, then here every time with this writer): the run's
    // own file was cut, and the escaped writer, sharing its offset, wrote there before the note did; that file
    // was then copied into the log. The log now gets the run's bytes up to the limit and the note directly.
    await withDir(async (dir) => {
      const path = join(dir, "log");
      using log = await Deno.open(path, { write: true, createNew: true });
      await log.write(new TextEncoder().encode("x".repeat(100)));
      await assert.rejects(
        runProcess(
          shellArgv(
            `setsid sh -c 'while :; do echo LATE; done' & echo $! > ${dir}/pid; ` +
              "sleep 0.2; head -c 5000 /dev/zero; sleep 30",
          ),
          { outputFile: log, via, maxOutputBytes: 1000, killGraceMs: 300 },
        ),
        OutputLimitError,
      );
      const escaped = Number(await Deno.readTextFile(join(dir, "pid")));
      try {
        const out = await Deno.readFile(path);
        await new Promise((r) => setTimeout(r, 300));
        assert.equal(text(out.subarray(1000)), "\n" + outputLimitNote(1000), `${out.length} bytes in the file`);
        assert.deepEqual(await Deno.readFile(path), out, "nothing written into the log later");
      } finally {
        killPids([escaped]);
      }
    });
  });

  Deno.test(`attack: a binary task's shared log: what an escaped process of run 1 writes later is not in the log nor counted as run 2's (${via})`, async () => {
    // docs/guarantees.md: "what a process that left the group (setsid) writes afterwards is not the job's".
    // Expected: the log holds "one\ntwo\n" and run 2's outputBytes counts its own bytes. Caught failing
    // through posix_spawn: the escaped process shared the log's open file description (the job's stdout was
    // a dup2 of the runner's descriptor), so its LATE landed in the log, inside run 2's part. Each run now
    // writes a file of its own, added to the log once the run has ended.
    await withDir(async (dir) => {
      const path = join(dir, "log");
      using log = await Deno.open(path, { write: true, createNew: true });
      const one = await runProcess(
        shellArgv(`setsid sh -c 'sleep 0.3; echo LATE' & echo $! > ${dir}/pid; sleep 0.1; echo one`),
        { outputFile: log, via, maxOutputBytes: 1000, killGraceMs: 100 },
      );
      const escaped = Number(await Deno.readTextFile(join(dir, "pid")));
      try {
        assert.equal(one.status, 0);
        const two = await runProcess(shellArgv("sleep 0.6; echo two"), {
          outputFile: log,
          via,
          maxOutputBytes: 1000,
          killGraceMs: 100,
        });
        assert.equal(two.status, 0);
        assert.equal(await Deno.readTextFile(path), "one\ntwo\n");
        assert.equal(two.outputBytes, 8, "the log's size after run 2: its own bytes only");
      } finally {
        killPids([escaped]);
      }
    });
  });

  Deno.test(`attack: output bytes exact: NUL, invalid UTF-8, no trailing newline, empty, CR, 0xFF runs (${via})`, async () => {
    const bytes = new Uint8Array(4096).map((_, i) => (i * 7919) & 0xff);
    await withDir(async (dir) => {
      const input = join(dir, "in");
      await Deno.writeFile(input, bytes);
      const o = await runToFile(via, shellArgv(`cat ${input}; printf '\\r\\0'; printf '\\377' >&2`));
      assert.deepEqual(o.out, new Uint8Array([...bytes, 13, 0, 0xff]));
      assert.equal(o.outputBytes, bytes.length + 3);
    });
    const empty = await runToFile(via, shellArgv("exec >&- 2>&-; :"));
    assert.equal(empty.status, 0);
    assert.equal(empty.out.length, 0);
    assert.equal(empty.outputBytes, 0);
  });

  ownProcessTest(
    import.meta.url,
    `attack: 100 MB of output keeps the runner's RSS bounded (/proc/<pid>/status via cat) (${via})`,
    async () => {
      await withDir(async (dir) => {
        const before = await rssBytes();
        let peak = before;
        const sampler = setInterval(async () => (peak = Math.max(peak, await rssBytes())), 100);
        try {
          const o = await runProcess(shellArgv("head -c 100000000 /dev/urandom | od -An -v -tx1 | head -c 100000000"), {
            outputFile: join(dir, "out"),
            via,
          });
          assert.equal(o.status, 0);
          assert.equal(o.outputBytes, 100_000_000);
        } finally {
          clearInterval(sampler);
        }
        assert.ok(peak - before < 64 * 1024 * 1024, `RSS ${before} -> peak ${peak}`);
      });
    },
  );
}

Deno.test("attack: JobExecutor: an output over the limit is 125 with only the note; a job at the limit is kept", async () => {
  await withDir(async (dir) => {
    const files = new SpoolFiles(dir);
    const executor = new JobExecutor({ files, killGraceMs: 300 });
    try {
      const over = await executor.run({ command: "yes", slot: 1, maxOutputBytes: 4096 });
      assert.equal(over.status, 125);
      let out = "";
      await over.output.pipeTo((c) => Promise.resolve(void (out += text(c))));
      await over.output.dispose();
      assert.equal(out, "vico runner: Output exceeds the limit of 4096 bytes; the job was killed\n");
      const at = await executor.run({ command: "head -c 4096 /dev/zero", slot: 1, maxOutputBytes: 4096 });
      assert.equal(at.status, 0);
      assert.equal(at.output.size, 4096);
      await at.output.dispose();
    } finally {
      await files.clear();
    }
  });
});
