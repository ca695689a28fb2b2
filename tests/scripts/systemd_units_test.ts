/**
 * The systemd units in scripts/systemd/ and scripts/install.sh: the units
 * pass `systemd-analyze verify`, say what the runner relies on (notify,
 * a clean stop by SIGTERM to the runner alone, its state directory), the
 * example environment files name only real flags, and the install script
 * does what its dry run prints, idempotently.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { EntryProcess, freePort, LISTENING, ROOT, RUN_FLAGS } from "../helpers/entry_process.ts";
import { readRecords, tempDir } from "../helpers/journal.ts";
import {
  execArgv,
  expandSpecifiers,
  parseEnvFile,
  readUnit,
  SYSTEMD_DIR,
  value,
  values,
} from "../helpers/systemd_unit.ts";

const dec = new TextDecoder();

const UNITS = ["vico-runner@.service", "vico-manager.service"];

function which(program: string): string | undefined {
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
    try {
      const path = join(dir || ".", program);
      if (Deno.statSync(path).isFile) return path;
    } catch {
      // Not here.
    }
  }
  return undefined;
}

const systemdAnalyze = which("systemd-analyze");
if (systemdAnalyze === undefined) {
  console.warn(
    "SKIPPED: systemd-analyze is not installed (Debian package 'systemd'): the units are not verified by systemd",
  );
}

/**
 * Copies the units into `dir` with the binaries they name replaced by stub
 * executables there (systemd-analyze checks that ExecStart's program exists
 * and is executable, and /usr/local/bin/runner is not installed here).
 */
async function stubbedUnits(dir: string, edit: (text: string) => string = (t) => t): Promise<void> {
  for (const bin of ["runner", "manager"]) {
    await Deno.writeTextFile(join(dir, bin), "#!/bin/sh\nexit 0\n", { mode: 0o755 });
  }
  for (const unit of UNITS) {
    const text = await Deno.readTextFile(SYSTEMD_DIR + unit);
    await Deno.writeTextFile(join(dir, unit), edit(text.replaceAll("/usr/local/bin/", `${dir}/`)));
  }
}

async function verify(paths: string[]): Promise<{ code: number; stderr: string }> {
  const out = await new Deno.Command(systemdAnalyze!, {
    args: ["verify", "--man=no", ...paths],
    stdout: "piped",
    stderr: "piped",
    env: { SYSTEMD_LOG_COLOR: "0" },
  }).output();
  return { code: out.code, stderr: dec.decode(out.stderr) + dec.decode(out.stdout) };
}

Deno.test({
  name: "vico-runner@NAME and vico-manager pass systemd-analyze verify without a warning (binaries stubbed)",
  ignore: systemdAnalyze === undefined,
  async fn() {
    await using dir = await tempDir();
    await stubbedUnits(dir.path);
    // An instance of the template, as `systemctl enable vico-runner@node1` makes.
    const { code, stderr } = await verify([join(dir.path, "vico-runner@node1.service"), join(dir.path, UNITS[1])]);
    assert.equal(code, 0, stderr);
    // verify exits 0 on settings it ignores (unknown keys, bad values): only silence is a pass.
    assert.equal(stderr.trim(), "", "systemd-analyze had something to say");
  },
});

Deno.test({
  name: "systemd-analyze verify, as used above, does report a unit systemd would half-ignore",
  ignore: systemdAnalyze === undefined,
  async fn() {
    await using dir = await tempDir();
    await stubbedUnits(dir.path, (t) => t.replace(/^Type=notify$/m, "Type=notifyy").replace(/^KillMode=/m, "KilMode="));
    const { stderr } = await verify([join(dir.path, "vico-runner@node1.service")]);
    assert.match(stderr, /notifyy/);
    assert.match(stderr, /KilMode/);
  },
});

Deno.test({
  name: "the unit's commented-out alternative, a join token as a credential, verifies too",
  ignore: systemdAnalyze === undefined,
  async fn() {
    await using dir = await tempDir();
    await stubbedUnits(dir.path, (t) => t.replace(/^#(LoadCredential=|Environment=VICO_JOIN_FILE=)/gm, "$1"));
    const runner = await Deno.readTextFile(join(dir.path, UNITS[0]));
    assert.match(runner, /^LoadCredential=join:/m);
    assert.match(runner, /^Environment=VICO_JOIN_FILE=%d\/join$/m);
    const { code, stderr } = await verify([join(dir.path, "vico-runner@node1.service")]);
    assert.equal(code, 0, stderr);
    assert.equal(stderr.trim(), "");
  },
});

Deno.test("vico-runner@ runs runner --persist as a notify service that SIGTERM stops cleanly", async () => {
  const unit = await readUnit("vico-runner@.service");
  const get = (key: string) => value(unit, "Service", key);
  assert.equal(get("Type"), "notify");
  // systemd-notify sends from its own pid when the runner is not root.
  assert.equal(get("NotifyAccess"), "all");
  assert.equal(get("ExecStart"), "/usr/local/bin/runner --persist --state-dir ${STATE_DIRECTORY}");
  assert.deepEqual(values(unit, "Service", "EnvironmentFile"), ["/etc/vico/runner-%i.env"]);
  assert.deepEqual(
    values(unit, "Service", "StateDirectory"),
    ["vico/runner-%i"],
    "one entry: $STATE_DIRECTORY is one path",
  );
  assert.equal(get("User"), "vico");
  assert.equal(get("DynamicUser"), undefined);
  // SIGTERM goes to the runner only: its jobs finish; SIGKILL for all after TimeoutStopSec.
  assert.equal(get("KillMode"), "mixed");
  assert.equal(get("KillSignal") ?? "SIGTERM", "SIGTERM");
  assert.match(get("TimeoutStopSec") ?? "", /^\d+(min|s|h)$/);
  assert.match(get("WatchdogSec") ?? "", /^\d+s$/);
  assert.equal(get("TimeoutStartSec"), "infinity", "READY=1 comes once the manager answers; it may be down");
  assert.equal(get("Restart"), "on-failure");
  assert.equal(get("RestartPreventExitStatus"), "2");
  assert.equal(get("Delegate"), "yes");
  for (const [key, v] of [["NoNewPrivileges", "yes"], ["ProtectSystem", "strict"], ["PrivateTmp", "yes"]]) {
    assert.equal(get(key), v, key);
  }
  assert.equal(get("ProtectControlGroups"), undefined, "it would make the delegated subtree read-only");
  assert.equal(get("MemoryDenyWriteExecute"), undefined, "V8's JIT needs writable executable memory");
  assert.deepEqual(values(unit, "Install", "WantedBy"), ["multi-user.target"]);

  const manager = await readUnit("vico-manager.service");
  assert.equal(value(manager, "Service", "EnvironmentFile"), "/etc/vico/manager.env");
  assert.match(
    value(manager, "Service", "ExecStart")!,
    /^\/usr\/local\/bin\/manager (.* )?--state-dir \$\{STATE_DIRECTORY\}/,
  );
  assert.equal(value(manager, "Service", "SuccessExitStatus"), "1", "some job failed is a finished run");
});

Deno.test("vico-manager and vico-runner@ command lines with their example env files: enrollment, a join token file, TLS, the list run", async () => {
  await using dir = await tempDir();
  const stateRoot = join(dir.path, "state");
  const managerState = join(stateRoot, "vico/manager");
  const runnerState = join(stateRoot, "vico/runner-test");
  for (const d of [managerState, runnerState]) await Deno.mkdir(d, { recursive: true, mode: 0o700 });
  const jobs = join(managerState, "jobs.txt");
  await Deno.writeTextFile(jobs, "echo one\necho two\necho three\n");
  const port = freePort();

  // /etc/vico/manager.env from its example: loopback (tests use nothing else), enrolled.
  const managerUnit = await readUnit("vico-manager.service");
  const managerEnv = {
    ...parseEnvFile(
      (await Deno.readTextFile(SYSTEMD_DIR + "manager.env.example"))
        .replace(/^VICO_JOBS=.*$/m, `VICO_JOBS=${jobs}`)
        .replace(/^VICO_HOST=.*$/m, "VICO_HOST=127.0.0.1") +
        `VICO_PORT=${port}\nVICO_ENROLL=1\nVICO_ADVERTISE=127.0.0.1:${port}\n`,
    ),
    STATE_DIRECTORY: managerState,
  };
  const managerArgv = execArgv(value(managerUnit, "Service", "ExecStart")!, managerEnv);
  assert.equal(managerArgv[0], "/usr/local/bin/manager");
  assert.equal(expandSpecifiers(value(managerUnit, "Service", "WorkingDirectory")!, { S: stateRoot }), managerState);
  await using manager = EntryProcess.spawnProgram(
    Deno.execPath(),
    [...RUN_FLAGS, ROOT + "manager.ts", ...managerArgv.slice(1)],
    { env: managerEnv, cwd: managerState },
  );
  await manager.waitFor(LISTENING);
  await manager.waitFor(/The join token is also in /);
  const tokenFile = join(managerState, "join-token");
  assert.equal(Deno.statSync(tokenFile).mode! & 0o777, 0o600);

  // /etc/vico/runner-test.env from its example, with the join token file.
  const runnerUnit = await readUnit("vico-runner@.service");
  const runnerEnv = {
    ...parseEnvFile(
      (await Deno.readTextFile(SYSTEMD_DIR + "runner.env.example"))
        .replace(/^VICO_MANAGER=.*$/m, `VICO_MANAGER=127.0.0.1:${port}`)
        .replace(/^#VICO_JOIN_FILE=.*$/m, `VICO_JOIN_FILE=${tokenFile}`)
        .replace(/^VICO_WORKERS=.*$/m, "VICO_WORKERS=2"),
    ),
    STATE_DIRECTORY: runnerState,
  };
  const runnerArgv = execArgv(value(runnerUnit, "Service", "ExecStart")!, runnerEnv);
  await using runner = EntryProcess.spawnProgram(
    Deno.execPath(),
    [...RUN_FLAGS, ROOT + "runner.ts", ...runnerArgv.slice(1)],
    { env: runnerEnv },
  );
  const status = await manager.exit(60_000);
  assert.equal(status.code, 0, manager.stderr + runner.stderr);
  assert.equal(readRecords(join(managerState, "jobs.results")).length, 3);
  assert.match(runner.stderr, /Connected to 127\.0\.0\.1:\d+ as .* with 2 worker\(s\)/);
  // --persist: it waits for the next list until stopped.
  runner.kill("SIGTERM");
  assert.equal((await runner.exit()).code, 0, runner.stderr);
  assert.ok(Deno.statSync(runnerState).isDirectory);
});

Deno.test("the example environment files name only flags the runner and the manager have", async () => {
  // Flags other work may add; commented out in the example until then.
  const optional = new Set(["VICO_JOB_MEMORY", "VICO_JOB_CPUS"]);
  for (const [example, entry] of [["runner.env.example", "runner.ts"], ["manager.env.example", "manager.ts"]]) {
    const text = await Deno.readTextFile(SYSTEMD_DIR + example);
    // Uncommented lines parse as an environment file.
    const set = parseEnvFile(text);
    assert.ok(Object.keys(set).length > 0, example);
    await using help = EntryProcess.spawn(entry, ["--help"]);
    assert.equal((await help.exit()).code, 0);
    const names = new Set([...text.matchAll(/^#?(VICO_[A-Z_]+)=/gm)].map((m) => m[1]));
    for (const name of names) {
      if (name === "VICO_JOIN" || optional.has(name)) continue;
      const flag = "--" + name.slice("VICO_".length).toLowerCase().replaceAll("_", "-");
      assert.ok(help.stdout.includes(flag), `${example}: ${name} is not a flag of ${entry} (${flag})`);
    }
  }
});

Deno.test("install.sh --dry-run --prefix prints every step and changes nothing", async () => {
  await using dir = await tempDir();
  const prefix = join(dir.path, "opt");
  const out = await new Deno.Command("bash", {
    args: [join(ROOT, "scripts/install.sh"), "--dry-run", "--prefix", prefix, "--runner", "gpu1"],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stdout = dec.decode(out.stdout);
  assert.equal(out.code, 0, dec.decode(out.stderr) + stdout);
  for (
    const step of [
      `+ install -m 0755 ${ROOT}dist/runner ${prefix}/bin/runner`,
      `+ install -m 0755 ${ROOT}dist/manager ${prefix}/bin/manager`,
      // Another prefix is written into the units.
      `+ sed 's#/usr/local/bin/#${prefix}/bin/#' ${ROOT}scripts/systemd/vico-runner@.service > /etc/systemd/system/vico-runner@.service`,
      "+ install -d -m 0750 /var/lib/vico",
      "+ install -d -m 0755 /etc/vico",
      `+ install -m 0644 ${ROOT}scripts/systemd/runner.env.example /etc/vico/runner.env.example`,
      `+ install -m 0600 ${ROOT}scripts/systemd/runner.env.example /etc/vico/runner-gpu1.env`,
      "systemctl enable --now vico-runner@gpu1",
      "dry run: nothing was changed",
    ]
  ) {
    assert.ok(stdout.includes(step), `missing from the dry run: ${step}\n${stdout}`);
  }
  assert.ok(/\+ useradd .*--system .*vico/.test(stdout) || stdout.includes("= user vico exists; kept"), stdout);
  assert.deepEqual([...Deno.readDirSync(dir.path)], [], "a dry run makes nothing");
});

Deno.test({
  name: "install.sh --root installs binaries, units, the vico user and /etc/vico; a second run keeps the configuration",
  ignore: Deno.uid() !== 0 || which("useradd") === undefined,
  async fn() {
    await using dir = await tempDir();
    const dist = join(dir.path, "dist");
    const root = join(dir.path, "root");
    await Deno.mkdir(dist);
    await Deno.mkdir(join(root, "etc"), { recursive: true });
    for (const bin of ["runner", "manager"]) {
      await Deno.writeTextFile(join(dist, bin), `#!/bin/sh\necho ${bin}\n`, { mode: 0o755 });
    }
    // A minimal password database for useradd --root.
    await Deno.writeTextFile(join(root, "etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n");
    await Deno.writeTextFile(join(root, "etc/group"), "root:x:0:\n");
    await Deno.writeTextFile(join(root, "etc/shadow"), "root:*:19000:0:99999:7:::\n", { mode: 0o600 });
    await Deno.writeTextFile(join(root, "etc/gshadow"), "root:*::\n", { mode: 0o600 });
    const install = async () => {
      const out = await new Deno.Command("bash", {
        args: [join(ROOT, "scripts/install.sh"), "--root", root, "--dist", dist, "--runner", "gpu1"],
        stdout: "piped",
        stderr: "piped",
      }).output();
      const text = dec.decode(out.stdout) + dec.decode(out.stderr);
      assert.equal(out.code, 0, text);
      return text;
    };
    await install();
    const mode = (path: string) => Deno.statSync(join(root, path)).mode! & 0o777;
    assert.equal(Deno.readTextFileSync(join(root, "usr/local/bin/runner")), "#!/bin/sh\necho runner\n");
    assert.equal(mode("usr/local/bin/runner"), 0o755);
    assert.equal(
      Deno.readTextFileSync(join(root, "etc/systemd/system/vico-runner@.service")),
      Deno.readTextFileSync(SYSTEMD_DIR + "vico-runner@.service"),
    );
    const passwd = Deno.readTextFileSync(join(root, "etc/passwd"));
    const vico = passwd.split("\n").find((l) => l.startsWith("vico:"))?.split(":");
    assert.ok(vico, passwd);
    assert.equal(vico[5], "/var/lib/vico");
    assert.ok(Number(vico[2]) < 1000, "a system user");
    assert.equal(Deno.statSync(join(root, "var/lib/vico")).uid, Number(vico[2]));
    assert.equal(mode("var/lib/vico"), 0o750);
    assert.equal(mode("etc/vico/runner-gpu1.env"), 0o600);
    assert.equal(mode("etc/vico/manager.env"), 0o640);
    assert.equal(mode("etc/vico/runner.env.example"), 0o644);

    // Again, after the administrator configured the runner: nothing is lost or doubled.
    Deno.writeTextFileSync(join(root, "etc/vico/runner-gpu1.env"), "VICO_MANAGER=head:7707\n");
    const second = await install();
    assert.match(second, /= user vico exists; kept/);
    assert.match(second, /runner-gpu1\.env exists; kept/);
    assert.equal(Deno.readTextFileSync(join(root, "etc/vico/runner-gpu1.env")), "VICO_MANAGER=head:7707\n");
    assert.equal(Deno.readTextFileSync(join(root, "etc/passwd")).match(/^vico:/gm)?.length, 1);
  },
});

Deno.test({
  name: "install.sh is shellcheck-clean",
  ignore: which("shellcheck") === undefined,
  async fn() {
    const out = await new Deno.Command("shellcheck", {
      args: [join(ROOT, "scripts/install.sh")],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(out.code, 0, dec.decode(out.stdout) + dec.decode(out.stderr));
  },
});
