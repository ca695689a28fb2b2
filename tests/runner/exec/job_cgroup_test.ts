/**
 * Per-job cgroups (`runner --job-memory`, `--job-cpus`): parsing of
 * `/proc/self/cgroup` and `/proc/self/mountinfo`, the start-up checks on this
 * machine, and, where a writable cgroup v2 tree exists, a job really placed
 * in (and removed with) a leaf of its own.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import {
  cgroupV2Dir,
  cpuMax,
  JobCgroups,
  parseJobLimits,
  parseMountInfo,
  parseProcCgroup,
  procCgroupTexts,
  sh,
} from "../../../runner/exec/job_cgroup.ts";
import { runProcess, shellArgv } from "../../../runner/exec/process_runner.ts";
import { VicoError } from "../../../core/errors.ts";

const dec = new TextDecoder();

/** A hybrid layout, as on this test machine: v1 controllers, a v2 tree with none of them at /sys/fs/cgroup/unified. */
const HYBRID_CGROUP = [
  "9:name=systemd:/",
  "4:memory:/process_api/5886301334079e8511c26803da2d632f",
  "1:cpu:/",
  "0::/",
  "",
].join("\n");
const HYBRID_MOUNTINFO = [
  "23 1 253:0 / / rw,relatime - ext4 /dev/vda rw",
  "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755",
  "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu",
  "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory",
  "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw",
  "",
].join("\n");

/** A systemd host on the unified hierarchy, the runner a service. */
const UNIFIED_CGROUP = "0::/system.slice/vico-runner.service\n";
const UNIFIED_MOUNTINFO = [
  "22 1 259:2 / / rw,relatime shared:1 - ext4 /dev/nvme0n1p2 rw",
  "26 22 0:23 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot",
  "",
].join("\n");

Deno.test("parseProcCgroup reads the 0:: line, and nothing from a v1-only process", () => {
  assert.equal(parseProcCgroup(HYBRID_CGROUP), "/");
  assert.equal(parseProcCgroup(UNIFIED_CGROUP), "/system.slice/vico-runner.service");
  assert.equal(parseProcCgroup("4:memory:/a\n1:cpu:/\n"), undefined);
  assert.equal(parseProcCgroup("0::/gone (deleted)\n"), "/gone");
});

Deno.test("parseMountInfo reads the fields after the optional ones and undoes octal escapes", () => {
  const mounts = parseMountInfo(
    UNIFIED_MOUNTINFO + "40 22 0:40 /sub /mnt/with\\040space rw shared:9 master:2 - cgroup2 none rw\nbad line\n",
  );
  assert.equal(mounts.length, 3);
  assert.deepEqual(mounts[1], {
    root: "/",
    mountPoint: "/sys/fs/cgroup",
    fsType: "cgroup2",
    superOptions: ["rw", "nsdelegate", "memory_recursiveprot"],
  });
  assert.equal(mounts[2].root, "/sub");
  assert.equal(mounts[2].mountPoint, "/mnt/with space");
  assert.equal(mounts[2].fsType, "cgroup2");
  assert.deepEqual(parseMountInfo(HYBRID_MOUNTINFO)[3].superOptions, ["rw", "memory"]);
});

Deno.test("cgroupV2Dir joins the cgroup2 mount with the process's path, minus the mount's own root", () => {
  assert.equal(cgroupV2Dir(HYBRID_CGROUP, HYBRID_MOUNTINFO), "/sys/fs/cgroup/unified");
  assert.equal(cgroupV2Dir(UNIFIED_CGROUP, UNIFIED_MOUNTINFO), "/sys/fs/cgroup/system.slice/vico-runner.service");
  // A mount of a subtree (as in a container): its root is cut from the path.
  const sub = "50 1 0:30 /kubepods/pod1 /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
  assert.equal(cgroupV2Dir("0::/kubepods/pod1/ctr\n", sub), "/sys/fs/cgroup/ctr");
  assert.equal(cgroupV2Dir("0::/elsewhere\n", sub), undefined);
  assert.equal(cgroupV2Dir("4:memory:/a\n", HYBRID_MOUNTINFO), undefined, "no v2 path");
  assert.equal(cgroupV2Dir(UNIFIED_CGROUP, "23 1 253:0 / / rw - ext4 /dev/vda rw\n"), undefined, "no cgroup2 mount");
});

Deno.test("parseJobLimits reads --job-memory sizes and --job-cpus numbers, refusing nonsense", () => {
  assert.equal(parseJobLimits(undefined, undefined), undefined);
  assert.deepEqual(parseJobLimits("512M", undefined), { memoryBytes: 512 * 1024 ** 2, memoryText: "512M" });
  assert.deepEqual(parseJobLimits(undefined, "0.5"), { cpus: 0.5 });
  for (const [memory, cpus] of [["lots", undefined], ["1000", undefined], [undefined, "0"], [undefined, "two"]]) {
    assert.throws(() => parseJobLimits(memory, cpus), (err) => err instanceof VicoError && err.code === "USAGE");
  }
});

Deno.test("cpuMax gives N CPUs' worth of each 100 ms period", () => {
  assert.equal(cpuMax(2), "200000 100000");
  assert.equal(cpuMax(0.5), "50000 100000");
  assert.equal(cpuMax(0.001), "1000 100000", "the kernel's smallest quota");
});

Deno.test("JobCgroups.setUp names what is missing: no cgroup v2 path, no cgroup2 mount for it", async () => {
  await assert.rejects(
    JobCgroups.setUp({ memoryBytes: 512 << 20, memoryText: "512M", cpus: 1 }, {
      procCgroup: "4:memory:/a\n",
      mountinfo: HYBRID_MOUNTINFO,
    }),
    /--job-memory and --job-cpus: this runner is in no cgroup v2 hierarchy/,
  );
  await assert.rejects(
    JobCgroups.setUp({ memoryBytes: 1 << 30 }, {
      procCgroup: UNIFIED_CGROUP,
      mountinfo: "23 1 253:0 / / rw - ext4 /dev/vda rw\n",
    }),
    /--job-memory: the cgroup2 file system holding this runner's cgroup \/system.slice\/vico-runner.service is not mounted/,
  );
});

// This machine, for real: whatever its layout, --job-memory is either usable
// or refused with the reason.
const here = await procCgroupTexts();
const hereDir = cgroupV2Dir(here.procCgroup, here.mountinfo);
const hereControllers = hereDir === undefined
  ? []
  : (await sh('cat "$0/cgroup.controllers"', [hereDir])).stdout.split(/\s+/).filter((c) => c !== "");

Deno.test({
  name: `JobCgroups.setUp on this machine refuses --job-memory, naming what is missing (${
    hereDir === undefined ? "no cgroup v2" : `v2 at ${hereDir}: ${hereControllers.join(" ") || "no controllers"}`
  })`,
  ignore: hereControllers.includes("memory"),
  async fn() {
    await assert.rejects(
      JobCgroups.setUp({ memoryBytes: 512 << 20, memoryText: "512M" }),
      (err) => {
        assert.ok(err instanceof VicoError && err.code === "USAGE");
        assert.match(
          err.message,
          hereDir === undefined ? /^--job-memory: this runner is in no cgroup v2 hierarchy/ : new RegExp(
            `^--job-memory: the cgroup v2 "memory" controller is not available to this runner's cgroup ${hereDir}`,
          ),
        );
        assert.match(err.message, /Delegate=yes/, "and how to fix it");
        return true;
      },
    );
  },
});

/** A fresh cgroup at the top of this machine's v2 tree (tests run as root), removed at disposal. */
async function topCgroup(): Promise<(AsyncDisposable & { path: string }) | undefined> {
  const mount = parseMountInfo(here.mountinfo).find((m) => m.fsType === "cgroup2" && m.root === "/");
  if (mount === undefined) return undefined;
  const path = join(mount.mountPoint, `vico-test-${Deno.pid}-${crypto.randomUUID().slice(0, 8)}`);
  if (!(await sh('mkdir "$0"', [path])).ok) return undefined;
  return {
    path,
    async [Symbol.asyncDispose]() {
      await sh('for d in "$0"/*/; do [ ! -d "$d" ] || rmdir "$d"; done; rmdir "$0"', [path]);
    },
  };
}

const canMake = await (async () => {
  await using top = await topCgroup();
  return top !== undefined;
})();

/** Output to a sink (`Deno.Command`), or to a file through `posix_spawn` or the `Deno.Command` fallback. */
type Mode = "sink" | "posix_spawn" | "command";

async function runIn(cgroups: JobCgroups, command: string, mode: Mode = "sink", runAs?: { uid: number; gid: number }) {
  if (mode !== "sink") {
    const dir = await Deno.makeTempDir({ prefix: "vico-cgroup-test-" });
    try {
      const outputFile = join(dir, "out");
      const outcome = await runProcess(shellArgv(command), { outputFile, via: mode, cgroups, runAs });
      assert.equal(outcome.via, mode);
      return { ...outcome, out: await Deno.readTextFile(outputFile) };
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  }
  let out = "";
  const outcome = await runProcess(shellArgv(command), {
    stderrOnStdout: true,
    sink: (c) => {
      out += dec.decode(c);
      return Promise.resolve();
    },
    cgroups,
    runAs,
  });
  return { ...outcome, out };
}

for (const mode of ["sink", "posix_spawn", "command"] as const) {
  Deno.test({
    name: canMake
      ? `runProcess() with cgroups: the job starts inside its own leaf, which goes when the job ends (${mode})`
      : `runProcess() with cgroups (SKIPPED: no writable cgroup v2 tree here) (${mode})`,
    ignore: !canMake,
    async fn() {
      await using top = (await topCgroup())!;
      // No limits: the placement alone, which needs no controller.
      await using cgroups = await JobCgroups.setUp({}, { base: top.path });
      const relative = top.path.slice(top.path.indexOf("/vico-test-"));
      const first = await runIn(cgroups, "cat /proc/self/cgroup", mode);
      assert.equal(first.status, 0, first.out);
      assert.match(first.out, new RegExp(`^0::${relative}/vico-job-${Deno.pid}-1$`, "m"));
      const second = await runIn(cgroups, "sh -c 'cat /proc/self/cgroup'", mode);
      assert.match(second.out, new RegExp(`^0::${relative}/vico-job-${Deno.pid}-2$`, "m"), "its children too");
      const left = (await sh('ls "$0"', [top.path])).stdout;
      assert.doesNotMatch(left, /vico-job-/, "the leaves are removed");
    },
  });
}

for (const mode of ["sink", "posix_spawn", "command"] as const) {
  Deno.test({
    name: canMake
      ? `runProcess() with cgroups: what a job leaves running in its leaf ends with it (${mode})`
      : `runProcess() with cgroups, leftovers (SKIPPED: no writable cgroup v2 tree here) (${mode})`,
    ignore: !canMake,
    async fn() {
      await using top = (await topCgroup())!;
      await using cgroups = await JobCgroups.setUp({}, { base: top.path });
      // The background sleep keeps its own copy of stdout: close it, or the pipe stays open.
      const { status, out } = await runIn(cgroups, "sleep 60 >/dev/null 2>&1 & echo $!", mode);
      assert.equal(status, 0);
      const pid = Number(out.trim());
      assert.ok(pid > 0, out);
      // Killed: gone, or a zombie until init reaps it.
      const state = (await sh('grep State /proc/"$0"/status 2>/dev/null', [String(pid)])).stdout;
      assert.ok(state === "" || /\bZ\b/.test(state), `the leftover sleep is gone: ${state}`);
      assert.doesNotMatch((await sh('ls "$0"', [top.path])).stdout, /vico-job-/);
    },
  });
}

Deno.test({
  name: canMake
    ? "JobCgroups: its helper shell, in a session of its own, is replaced when killed; leaves are still removed"
    : "JobCgroups helper shell (SKIPPED: no writable cgroup v2 tree here)",
  ignore: !canMake,
  async fn() {
    await using top = (await topCgroup())!;
    await using cgroups = await JobCgroups.setUp({}, { base: top.path });
    assert.equal((await runIn(cgroups, "true")).status, 0);
    // The helper is the shell running the reaper script; it must not share the runner's process group.
    const found = (await sh('pgrep -P "$0" -f "^/bin/sh -c .populated"', [String(Deno.pid)])).stdout.trim();
    const helper = Number(found);
    assert.ok(helper > 0, `the helper shell is running: ${found}`);
    const groups = (await sh('ps -o pgid= -p "$0" -p "$1"', [String(helper), String(Deno.pid)])).stdout.trim();
    const [helperGroup, ownGroup] = groups.split(/\s+/);
    assert.notEqual(helperGroup, ownGroup, "a Ctrl-C or a step's signal to the runner's group misses it");
    Deno.kill(helper, "SIGKILL");
    const after = await runIn(cgroups, "echo still");
    assert.equal(after.status, 0, after.out);
    assert.doesNotMatch((await sh('ls "$0"', [top.path])).stdout, /vico-job-/, "the leaf went all the same");
  },
});

for (const mode of ["sink", "posix_spawn", "command"] as const) {
  Deno.test({
    name: canMake
      ? `runProcess() with cgroups: a wrapper that cannot enter its leaf fails the job with 125 and says why (${mode})`
      : `runProcess() with cgroups, failure (SKIPPED: no writable cgroup v2 tree here) (${mode})`,
    ignore: !canMake,
    async fn() {
      await using top = (await topCgroup())!;
      await using cgroups = await JobCgroups.setUp({}, { base: top.path });
      await sh('rmdir "$0"', [top.path]); // gone under the runner's feet
      const { status, out } = await runIn(cgroups, "echo should-not-run", mode);
      assert.equal(status, 125);
      assert.match(out, /vico: cannot put the job in its cgroup .*\/vico-job-/);
      assert.doesNotMatch(out, /should-not-run/);
    },
  });
}

for (const mode of ["sink", "posix_spawn", "command"] as const) {
  Deno.test({
    name: canMake && Deno.uid() === 0
      ? `runProcess() with cgroups and another user: the wrapper enters the leaf as root, then the job runs as the user (${mode})`
      : `runProcess() with cgroups and another user (SKIPPED: needs root and a writable cgroup v2 tree) (${mode})`,
    ignore: !canMake || Deno.uid() !== 0,
    async fn() {
      await using top = (await topCgroup())!;
      await using cgroups = await JobCgroups.setUp({}, { base: top.path, runAs: true });
      const { out, ...outcome } = await runIn(cgroups, "id -u; id -g; id -G; cat /proc/self/cgroup", mode, {
        uid: 65534,
        gid: 65534,
      });
      assert.equal(outcome.status, 0, out);
      const [uid, gid, groups] = out.split("\n");
      assert.deepEqual([uid, gid, groups], ["65534", "65534", "65534"], "no supplementary groups left");
      assert.match(out, new RegExp(`^0::/vico-test-[^/]+/vico-job-${Deno.pid}-1$`, "m"));
    },
  });
}

Deno.test({
  name: canMake
    ? "JobCgroups.setUp refuses a cgroup that other processes share, before moving anything"
    : "JobCgroups.setUp with a shared cgroup (SKIPPED: no writable cgroup v2 tree here)",
  ignore: !canMake,
  async fn() {
    await using top = (await topCgroup())!;
    const mount = parseMountInfo(here.mountinfo).find((m) => m.fsType === "cgroup2" && m.root === "/")!;
    // Another process in the cgroup the "runner" is in.
    const other = new Deno.Command("/bin/sh", {
      args: ["-c", 'echo $$ > "$0/cgroup.procs" && exec sleep 30', top.path],
    }).spawn();
    try {
      for (let i = 0; i < 100 && !(await sh('grep -q . "$0/cgroup.procs"', [top.path])).ok; i++) {
        await new Promise((r) => setTimeout(r, 10));
      }
      await assert.rejects(
        JobCgroups.setUp({}, {
          procCgroup: `0::${top.path.slice(mount.mountPoint.length)}\n`,
          mountinfo: here.mountinfo,
        }),
        new RegExp(`other processes share this runner's cgroup ${top.path} \\(${other.pid}\\)`),
      );
      assert.equal((await sh('ls -d "$0"/*/ 2>/dev/null', [top.path])).stdout, "", "no leaf was made");
    } finally {
      other.kill("SIGKILL");
      await other.status;
    }
  },
});

for (const mode of ["sink", "posix_spawn", "command"] as const) {
  Deno.test({
    name: canMake
      ? `runProcess() with cgroups: a process that left the job's group (setsid) holding its output ends with the job (${mode})`
      : `runProcess() with cgroups, setsid escapee (SKIPPED: no writable cgroup v2 tree here) (${mode})`,
    ignore: !canMake,
    async fn() {
      await using top = (await topCgroup())!;
      await using cgroups = await JobCgroups.setUp({}, { base: top.path });
      const started = performance.now();
      const { status, out, outputAbandoned } = await runIn(cgroups, "setsid sleep 60 & echo $!", mode);
      assert.equal(status, 0);
      assert.equal(outputAbandoned, undefined, "the pipe closed: the escapee is gone");
      assert.ok(performance.now() - started < 5000);
      const state = (await sh('grep State /proc/"$0"/status 2>/dev/null', [out.trim()])).stdout;
      assert.ok(state === "" || /\bZ\b/.test(state), `the escaped sleep is gone: ${state}`);
    },
  });
}

Deno.test({
  name: canMake
    ? "JobCgroups.setUp ends the job leaves a runner that is gone left behind, and keeps a live runner's"
    : "JobCgroups.setUp, stale leaves (SKIPPED: no writable cgroup v2 tree here)",
  ignore: !canMake,
  async fn() {
    await using top = (await topCgroup())!;
    // pid 2^22+1 is above Linux's pid_max limit: never a live runner. This process stands for a live one.
    const stale = join(top.path, `vico-job-${(1 << 22) + 1}-1`);
    const live = join(top.path, `vico-job-${Deno.pid}-999`);
    const sleeper = new Deno.Command("/bin/sh", {
      args: ["-c", 'mkdir "$0" && echo $$ > "$0/cgroup.procs" && exec sleep 60', stale],
    }).spawn();
    for (let i = 0; i < 100 && !(await sh('grep -q . "$0/cgroup.procs"', [stale])).ok; i++) {
      await new Promise((r) => setTimeout(r, 10));
    }
    await sh('mkdir "$0"', [live]);
    await using _cgroups = await JobCgroups.setUp({}, { base: top.path });
    assert.equal((await sleeper.status).signal, "SIGKILL");
    const left = (await sh('ls "$0"', [top.path])).stdout;
    assert.doesNotMatch(left, new RegExp(`vico-job-${(1 << 22) + 1}-1`));
    assert.match(left, new RegExp(`vico-job-${Deno.pid}-999`));
    await sh('rmdir "$0"', [live]);
  },
});
