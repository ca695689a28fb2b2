/**
 * The runner under systemd's notification protocol: the ServiceNotifier's
 * rules on their own, then the runner started with the exact command line
 * and environment file of scripts/systemd/vico-runner@.service, against a
 * real manager, with a real unix datagram socket as NOTIFY_SOCKET.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { ServiceNotifier } from "../../../runner/service/sd_notify.ts";
import { EntryProcess, freePort, ROOT, startManager } from "../../helpers/entry_process.ts";
import { byLine, readOutput, readRecords, tempDir } from "../../helpers/journal.ts";
import { execArgv, expandSpecifiers, parseEnvFile, readUnit, SYSTEMD_DIR, value } from "../../helpers/systemd_unit.ts";

const dec = new TextDecoder();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function which(program: string): string | undefined {
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
    try {
      if (Deno.statSync(join(dir || ".", program)).isFile) return join(dir || ".", program);
    } catch {
      // Not here.
    }
  }
  return undefined;
}

/** A ServiceNotifier whose messages land in an array, each after `sendMs`. */
function recording(options: { statusIntervalMs?: number; watchdogUsec?: number; sendMs?: number } = {}) {
  const sent: string[] = [];
  const notifier = new ServiceNotifier(async (message) => {
    if (options.sendMs) await sleep(options.sendMs);
    sent.push(message);
  }, options);
  return { sent, notifier };
}

Deno.test("ServiceNotifier: READY=1 once, with the status; later readiness only updates the status", async () => {
  const { sent, notifier } = recording({ statusIntervalMs: 0 });
  notifier.ready("0 job(s) running, 0 done; manager h:1");
  notifier.ready("0 job(s) running, 0 done; manager h:1");
  notifier.ready("1 job(s) running, 0 done; manager h:1");
  await notifier.close();
  assert.deepEqual(sent, [
    "READY=1\nSTATUS=0 job(s) running, 0 done; manager h:1",
    "STATUS=1 job(s) running, 0 done; manager h:1",
  ]);
});

Deno.test("ServiceNotifier: a status goes out when it changes, at most once per interval, the latest winning", async () => {
  const { sent, notifier } = recording({ statusIntervalMs: 300 });
  notifier.status("a");
  notifier.status("a");
  notifier.status("b");
  notifier.status("c\nsecond line");
  await sleep(100);
  assert.deepEqual(sent, ["STATUS=a"], "b and c wait for the interval");
  await sleep(400);
  assert.deepEqual(sent, ["STATUS=a", "STATUS=c second line"], "one line; b was overtaken");
  notifier.status("x".repeat(1000));
  await notifier.close();
  assert.equal(sent.length, 3, "close sends the status held back");
  assert.ok(sent[2].length < 260, "a status is cut to one short line");
});

Deno.test("ServiceNotifier: STOPPING=1 once, and later statuses say it is stopping", async () => {
  const { sent, notifier } = recording({ statusIntervalMs: 0 });
  notifier.ready("1 job(s) running");
  notifier.stopping();
  notifier.stopping();
  notifier.ready("0 job(s) running");
  await notifier.close();
  assert.deepEqual(sent, [
    "READY=1\nSTATUS=1 job(s) running",
    "STOPPING=1\nSTATUS=Stopping; 1 job(s) running",
    "STATUS=Stopping; 0 job(s) running",
  ]);
});

Deno.test("ServiceNotifier: WATCHDOG=1 every half WATCHDOG_USEC until closed", async () => {
  const { sent, notifier } = recording({ watchdogUsec: 100_000 });
  assert.equal(notifier.watchdogMs, 50);
  await sleep(420);
  await notifier.close();
  const count = sent.filter((m) => m === "WATCHDOG=1").length;
  assert.ok(count >= 4 && count <= 9, `${count} keep-alives in 420 ms at one per 50 ms`);
  await sleep(150);
  assert.equal(sent.length, count, "none after close");
});

Deno.test("ServiceNotifier: with a slow sender, messages keep their order and at most one status and keep-alive wait", async () => {
  const { sent, notifier } = recording({ statusIntervalMs: 0, watchdogUsec: 20_000, sendMs: 100 });
  notifier.ready("r");
  for (let i = 0; i < 50; i++) {
    notifier.status(`s${i}`);
    await sleep(2);
  }
  notifier.stopping();
  await notifier.close();
  assert.equal(sent[0], "READY=1\nSTATUS=r");
  assert.ok(sent.length <= 8, `${sent.length} sent: waiting messages were merged, not queued: ${sent}`);
  assert.ok(sent.includes("STATUS=s49") || sent.some((m) => m.startsWith("STOPPING=1")), sent.join(" | "));
  assert.ok(sent.indexOf("STATUS=s49") < sent.findIndex((m) => m.startsWith("STOPPING=1")));
});

Deno.test("ServiceNotifier.fromEnv: nothing without NOTIFY_SOCKET; takes the variables out of the environment jobs inherit", async () => {
  const saved = ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"].map((n) => [n, Deno.env.get(n)] as const);
  try {
    Deno.env.delete("NOTIFY_SOCKET");
    Deno.env.set("WATCHDOG_USEC", "1000000");
    assert.equal(await ServiceNotifier.fromEnv(), undefined);
    assert.equal(Deno.env.get("WATCHDOG_USEC"), undefined);

    Deno.env.set("NOTIFY_SOCKET", "/nonexistent/notify");
    Deno.env.set("WATCHDOG_USEC", "3000000");
    Deno.env.set("WATCHDOG_PID", String(Deno.pid));
    const mine = await ServiceNotifier.fromEnv();
    assert.ok(mine);
    assert.equal(mine.watchdogMs, 1500);
    await mine.close();
    for (const name of ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"]) assert.equal(Deno.env.get(name), undefined);

    // The watchdog is for another process (WATCHDOG_PID): no keep-alives from this one.
    Deno.env.set("NOTIFY_SOCKET", "/nonexistent/notify");
    Deno.env.set("WATCHDOG_USEC", "3000000");
    Deno.env.set("WATCHDOG_PID", "1");
    const other = await ServiceNotifier.fromEnv();
    assert.equal(other?.watchdogMs, undefined);
    await other?.close();
  } finally {
    for (const [name, v] of saved) v === undefined ? Deno.env.delete(name) : Deno.env.set(name, v);
  }
});

/**
 * A unix datagram socket like systemd's notify socket: prints each message
 * as a JSON line with the sender's pid from SCM_CREDENTIALS, and answers a
 * BARRIER=1 (systemd-notify waits for it) by closing the fd it carries.
 */
const LISTENER = `
import array, json, os, socket, struct, sys, time
path = sys.argv[1]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind("\\0" + path[1:] if path.startswith("@") else path)
if not path.startswith("@"): os.chmod(path, 0o777)
s.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
print(json.dumps({"listening": path}), flush=True)
while True:
    msg, anc, _, _ = s.recvmsg(65536, socket.CMSG_SPACE(12) + socket.CMSG_SPACE(4 * 16))
    pid = None
    for level, kind, data in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
            pid = struct.unpack("iII", data[:12])[0]
        elif level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds = array.array("i")
            fds.frombytes(data[: len(data) - len(data) % 4])
            for fd in fds: os.close(fd)
    print(json.dumps({"pid": pid, "message": msg.decode(), "t": time.monotonic()}), flush=True)
`;

interface Notification {
  pid: number | null;
  message: string;
  t: number;
}

function notifications(listener: EntryProcess): Notification[] {
  return listener.stdout.split("\n").filter((l) => l.startsWith('{"pid"')).map((l) => JSON.parse(l))
    .filter((n: Notification) => n.message !== "BARRIER=1");
}

/** Waits for a notification matching `pattern`; a failure shows what was received and the runner's log. */
async function expectNotification(
  listener: EntryProcess,
  runner: EntryProcess,
  pattern: RegExp,
  timeoutMs = 10_000,
): Promise<void> {
  try {
    await listener.waitFor(pattern, timeoutMs);
  } catch (err) {
    throw new Error(
      `${(err as Error).message}\nreceived:\n${listener.stdout}\nrunner's log:\n${runner.stderr}`,
    );
  }
}

/** Seconds in a systemd time span like "15min", "60s", "2h". */
function seconds(span: string): number {
  const m = span.match(/^(\d+)(s|min|h)$/);
  assert.ok(m, `time span ${span}`);
  return Number(m[1]) * { s: 1, min: 60, h: 3600 }[m[2] as "s" | "min" | "h"];
}

/**
 * Starts a runner as vico-runner@test.service would (its ExecStart, its
 * environment file, $STATE_DIRECTORY), with `NOTIFY_SOCKET` this test
 * listens on, and checks what it tells the service manager from start to a
 * SIGTERM in the middle of a job.
 */
async function runAsService(
  how: { unstableNet: boolean; abstract: boolean; viaSystemdNotify: boolean },
): Promise<void> {
  const unit = await readUnit("vico-runner@.service");
  await using dir = await tempDir();
  const stateRoot = join(dir.path, "state");
  const stateDirectory = join(stateRoot, "vico/runner-test");
  await Deno.mkdir(stateDirectory, { recursive: true, mode: 0o700 });
  const port = freePort();

  // The administrator's /etc/vico/runner-test.env, made from the example.
  const envFile = expandSpecifiers(value(unit, "Service", "EnvironmentFile")!, { i: "test" });
  assert.equal(envFile, "/etc/vico/runner-test.env");
  const example = await Deno.readTextFile(SYSTEMD_DIR + "runner.env.example");
  const envText = example.replace(/^VICO_MANAGER=.*$/m, `VICO_MANAGER=127.0.0.1:${port}`)
    .replace(/^VICO_WORKERS=.*$/m, "VICO_WORKERS=2") + "VICO_NAME=svc-test\nVICO_RETRY_MAX=1s\n";
  const fileEnv = parseEnvFile(envText);
  assert.equal(fileEnv.VICO_MANAGER, `127.0.0.1:${port}`);

  // What systemd adds: $STATE_DIRECTORY, NOTIFY_SOCKET, WATCHDOG_USEC. The
  // unit's WatchdogSec (60s) is too slow for a test: 2s here.
  assert.ok(seconds(value(unit, "Service", "WatchdogSec")!) >= 2);
  const notifySocket = how.abstract ? `@vico-test-${crypto.randomUUID()}` : join(dir.path, "notify");
  const serviceEnv = {
    ...fileEnv,
    STATE_DIRECTORY: stateDirectory,
    NOTIFY_SOCKET: notifySocket,
    WATCHDOG_USEC: "2000000",
  };
  const argv = execArgv(
    expandSpecifiers(value(unit, "Service", "ExecStart")!, { i: "test", S: stateRoot }),
    serviceEnv,
  );
  assert.deepEqual(argv, ["/usr/local/bin/runner", "--persist", "--state-dir", stateDirectory]);
  const runArgs = ["run", "-q", "-P=vico", ...(how.unstableNet ? ["--unstable-net"] : []), ROOT + "runner.ts"];

  await using listener = EntryProcess.spawnProgram("python3", ["-c", LISTENER, notifySocket]);
  await listener.waitFor(/"listening"/);
  await using runner = EntryProcess.spawnProgram(Deno.execPath(), [...runArgs, ...argv.slice(1)], {
    env: serviceEnv,
  });

  // No manager yet: a status says so, and no READY=1.
  await expectNotification(
    listener,
    runner,
    new RegExp(`STATUS=0 job\\(s\\) running, 0 done; waiting for manager 127\\.0\\.0\\.1:${port}`),
  );
  assert.ok(!notifications(listener).some((n) => n.message.includes("READY=1")));

  const list = join(dir.path, "jobs.txt");
  await Deno.writeTextFile(
    list,
    'echo "notify=${NOTIFY_SOCKET:-none} watchdog=${WATCHDOG_USEC:-none}"\nsleep 4; echo slow\n',
  );
  const results = join(dir.path, "res");
  const { manager } = await startManager(["--jobs", list, "--results", results, "--port", String(port)]);
  await using _manager = manager;
  await expectNotification(listener, runner, /READY=1/, 15_000);
  await manager.waitFor(/Runner svc-test joined/);
  const ready = notifications(listener).find((n) => n.message.includes("READY=1"))!;
  assert.match(ready.message, new RegExp(`STATUS=\\d job\\(s\\) running, \\d done; manager 127\\.0\\.0\\.1:${port}`));
  // Whose message it is: systemd attributes it by the sender's pid.
  if (how.viaSystemdNotify) {
    assert.match(ready.message, new RegExp(`^MAINPID=${runner.pid}$`, "m"));
    if (Deno.uid() === 0) assert.equal(ready.pid, runner.pid, "root: systemd-notify sends as the runner");
    else assert.notEqual(ready.pid, runner.pid, "not root: as itself (hence NotifyAccess=all)");
  } else {
    assert.equal(ready.pid, runner.pid);
    assert.doesNotMatch(ready.message, /MAINPID/);
  }

  // The quick job is done, the slow one runs: the status says so.
  await expectNotification(listener, runner, /STATUS=1 job\(s\) running, 1 done; manager/, 10_000);
  await expectNotification(listener, runner, /WATCHDOG=1[^]*WATCHDOG=1/, 10_000);

  const termAt = performance.now();
  runner.kill("SIGTERM");
  await expectNotification(listener, runner, /STOPPING=1\\nSTATUS=Stopping; 1 job\(s\) running/, 5_000);
  const status = await runner.exit(seconds(value(unit, "Service", "TimeoutStopSec")!) * 1000);
  const stopMs = performance.now() - termAt;
  assert.equal(status.code, 0, runner.stderr);
  assert.ok(stopMs < 10_000, `stopped ${Math.round(stopMs)} ms after SIGTERM: when its job ended`);
  // Its idle worker's PETO was held (the slow job might have come back for a retry): the runner left (VICO/1 leave).
  await expectNotification(
    listener,
    runner,
    new RegExp(`STATUS=Stopping; 0 job\\(s\\) running, 2 done; not connected to manager 127\\.0\\.0\\.1:${port}`),
    5_000,
  );

  // The manager recorded the job that was running at SIGTERM, and the job
  // did not inherit the notify socket or the watchdog.
  assert.equal((await manager.exit()).code, 0, manager.stderr);
  const recs = byLine(readRecords(results));
  assert.equal(recs.size, 2);
  assert.equal(dec.decode(readOutput(results, recs.get(1)!)), "notify=none watchdog=none\n");
  assert.equal(recs.get(2)!.status, 0);
  assert.equal(dec.decode(readOutput(results, recs.get(2)!)), "slow\n");

  // Keep-alives came every second (half of WATCHDOG_USEC), never 2 s apart.
  const all = notifications(listener);
  const watchdogs = all.filter((n) => n.message.split("\n").includes("WATCHDOG=1")).map((n) => n.t);
  assert.ok(watchdogs.length >= 3, `${watchdogs.length} keep-alives`);
  const gaps = watchdogs.slice(1).map((t, i) => t - watchdogs[i]);
  assert.ok(Math.max(...gaps) < 2, `keep-alive gaps ${gaps.map((g) => g.toFixed(2)).join(" ")} s`);
  // Only the messages the runner is meant to send.
  for (const n of all) {
    for (const line of n.message.split("\n")) {
      assert.match(line, /^(READY=1|STOPPING=1|WATCHDOG=1|STATUS=.*|MAINPID=\d+)$/, line);
    }
  }
  assert.equal(all.filter((n) => n.message.includes("READY=1")).length, 1);
  assert.equal(all.filter((n) => n.message.includes("STOPPING=1")).length, 1);
}

const hasPython = which("python3") !== undefined;
const hasSystemdNotify = which("systemd-notify") !== undefined;
if (!hasPython) {
  console.warn("SKIPPED: no python3 to listen on a unix datagram socket: the runner is not tested as a service");
}
if (!hasSystemdNotify) {
  console.warn("SKIPPED: no systemd-notify (Debian package 'systemd'): the runner's fallback sender is not tested");
}

Deno.test({
  name: "vico-runner@'s command line under systemd-notify: READY=1 once joined, STATUS, WATCHDOG=1, STOPPING=1; " +
    "SIGTERM lets the job finish and be recorded, exit 0",
  ignore: !hasPython || !hasSystemdNotify,
  fn: () => runAsService({ unstableNet: false, abstract: false, viaSystemdNotify: true }),
});

Deno.test({
  name: "the same with --unstable-net: the runner sends its own datagrams, from its own pid",
  ignore: !hasPython,
  fn: () => runAsService({ unstableNet: true, abstract: false, viaSystemdNotify: false }),
});

Deno.test({
  name: "the same with an abstract NOTIFY_SOCKET (@name), which Deno cannot reach: through systemd-notify",
  ignore: !hasPython || !hasSystemdNotify,
  fn: () => runAsService({ unstableNet: true, abstract: true, viaSystemdNotify: true }),
});
