/**
 * Security end to end, with the real `manager.ts` and `runner.ts` processes:
 * TLS for both protocols, zero-config enrollment with a join token, mutual
 * authentication with a shared secret (wrong secrets and replayed
 * transcripts refused both ways before anything runs), secret files, root,
 * and the manager's connection cap. Each claim of docs/security.md points
 * here.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { formatJoinToken, parseJoinToken } from "../../protocol/join_token.ts";
import { makeSelfSignedIdentity } from "../../manager/sessions/enrollment.ts";
import {
  EntryProcess,
  ROOT,
  startManager,
  startManagerAgain,
  startManagerOn,
  startRunner,
  writeJobList,
} from "../helpers/entry_process.ts";
import { readJournal, readOutput, readRecords, tempDir } from "../helpers/journal.ts";
import { LinePeer } from "../helpers/line_peer.ts";

const dec = new TextDecoder();
const hasOpenssl = new Deno.Command("sh", { args: ["-c", "command -v openssl"], stdout: "null" }).outputSync()
  .success;

/** A private CA, manager certificate and secret made by scripts/make_certs.sh. */
async function makePki(dir: string): Promise<{ ca: string; cert: string; key: string; secret: string }> {
  const out = await new Deno.Command("bash", {
    args: [ROOT + "scripts/make_certs.sh", dir, "localhost", "127.0.0.1"],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.ok(out.success, dec.decode(out.stderr));
  return {
    ca: join(dir, "ca.crt"),
    cert: join(dir, "manager.crt"),
    key: join(dir, "manager.key"),
    secret: join(dir, "secret"),
  };
}

async function writeSecret(path: string, text: string, mode = 0o600): Promise<string> {
  await Deno.writeTextFile(path, text + "\n", { mode });
  await Deno.chmod(path, mode);
  return path;
}

function onlyRunRecords(results: string): void {
  const kinds = readJournal(results).map((r) => r.type);
  assert.deepEqual(kinds, ["run"], `nothing was handed out: ${kinds}`);
}

/** The join token a manager printed on stdout, on a line of its own. */
async function tokenOf(manager: EntryProcess): Promise<string> {
  return (await manager.waitFor(/^\s*(vico1_[A-Za-z0-9_-]+)$/m))[1];
}

Deno.test({
  name: "TLS with a private CA and a secret: a text runner and a binary node finish the list over one port",
  ignore: !hasOpenssl,
  async fn() {
    await using dir = await tempDir();
    const pki = await makePki(join(dir.path, "pki"));
    const jobs = Array.from({ length: 8 }, (_, i) => `sleep 0.3; echo tls-${i}`);
    const { manager, port, results } = await startManagerOn(dir.path, jobs, [
      ...["--tls-cert", pki.cert, "--tls-key", pki.key, "--secret-file", pki.secret],
    ]);
    await using _m = manager;
    assert.match(manager.stderr, /\(TLS, secret\)/);
    const security = ["--manager", `localhost:${port}`, "--tls-ca", pki.ca, "--secret-file", pki.secret];
    await using text = EntryProcess.spawn("runner.ts", [...security, "--workers", "2", "--name", "t"]);
    await using binary = EntryProcess.spawn("runner.ts", [
      ...[...security, "--workers", "2", "--name", "b", "--protocol", "binary"],
    ]);
    const [ms, ts, bs] = await Promise.all([manager.exit(), text.exit(), binary.exit()]);
    assert.equal(ms.code, 0, manager.stderr);
    assert.equal(ts.code, 0, text.stderr);
    assert.equal(bs.code, 0, binary.stderr);
    const records = readRecords(results);
    assert.equal(records.length, 8);
    for (const r of records) assert.equal(dec.decode(readOutput(results, r)), `tls-${r.line - 1}\n`);
    assert.ok(
      records.some((r) => r.host === "t") && records.some((r) => r.host !== "t"),
      `both kinds took jobs: ${records.map((r) => r.host)}`,
    );
  },
});

Deno.test({
  name: "manager --local with TLS and a secret: local workers authenticate in-process, a remote runner over TLS",
  ignore: !hasOpenssl,
  async fn() {
    await using dir = await tempDir();
    const pki = await makePki(join(dir.path, "pki"));
    const jobs = Array.from({ length: 8 }, (_, i) => `sleep 0.3; echo both-${i}`);
    const { manager, port, results } = await startManagerOn(dir.path, jobs, [
      ...["--local", "1"],
      ...["--tls-cert", pki.cert, "--tls-key", pki.key, "--secret-file", pki.secret],
    ]);
    await using _m = manager;
    const security = ["--manager", `localhost:${port}`, "--tls-ca", pki.ca, "--secret-file", pki.secret];
    await using remote = EntryProcess.spawn("runner.ts", [...security, "--workers", "2", "--name", "t"]);
    const [ms, rs] = await Promise.all([manager.exit(), remote.exit()]);
    assert.equal(ms.code, 0, manager.stderr);
    assert.equal(rs.code, 0, remote.stderr);
    const records = readRecords(results);
    assert.equal(records.length, 8);
    for (const r of records) assert.equal(dec.decode(readOutput(results, r)), `both-${r.line - 1}\n`);
    const hosts = new Set(records.map((r) => r.host));
    assert.ok(
      hosts.has("t") && hosts.has("local-1"),
      `both the local worker and the remote runner took jobs: ${[...hosts]}`,
    );
  },
});

Deno.test("enrollment: the manager makes its key, certificate and secret once; a join token is all a runner needs", async () => {
  await using dir = await tempDir();
  const state = join(dir.path, "state");
  // The jobs wait until both runners have joined: otherwise one could finish the list before the other is in.
  const go = join(dir.path, "go");
  const jobs = Array.from({ length: 6 }, (_, i) => `while [ ! -e ${go} ]; do sleep 0.02; done; echo joined-${i}`);
  const { manager, port, results } = await startManagerOn(dir.path, jobs, ["--enroll", "--state-dir", state]);
  await using _m = manager;
  const token = await tokenOf(manager);
  const parsed = parseJoinToken(token);
  assert.equal(parsed.manager, `127.0.0.1:${port}`);
  // A token on a command line is in /proc/PID/cmdline for every local user: the hint never suggests it.
  await manager.waitFor(/The join token is also in/);
  assert.doesNotMatch(manager.stdout + manager.stderr, /--join\s+vico1_/);
  assert.match(manager.stdout, /^ {2}runner --workers N --join-file FILE$/m);
  assert.match(manager.stdout, /^ {2}VICO_JOIN=\.\.\. runner --workers N$/m);
  assert.match(manager.stderr, /Enrolled: new key, certificate \(SHA-256 [0-9a-f]{64}\)/);
  assert.equal((await Deno.stat(state)).mode! & 0o777, 0o700);
  for (const f of ["manager.key", "secret", "join-token"]) {
    assert.equal((await Deno.stat(join(state, f))).mode! & 0o777, 0o600, f);
  }
  assert.equal((await Deno.readTextFile(join(state, "join-token"))).trim(), token);

  await using text = EntryProcess.spawn("runner.ts", ["--join", token, "--workers", "2", "--name", "t"]);
  await using binary = EntryProcess.spawn("runner.ts", [
    ...["--join-file", join(state, "join-token"), "--workers", "1", "--name", "b", "--protocol", "binary"],
  ]);
  await Promise.all([manager.waitFor(/Runner t joined/), manager.waitFor(/Node \S+ joined/)]);
  await Deno.writeTextFile(go, "");
  const [ms, ts, bs] = await Promise.all([manager.exit(), text.exit(), binary.exit()]);
  assert.equal(ms.code, 0, manager.stderr);
  assert.equal(ts.code, 0, text.stderr);
  assert.equal(bs.code, 0, binary.stderr);
  assert.equal(readRecords(results).length, 6);

  // A restart loads the same identity: tokens already handed out keep working.
  const envList = join(dir.path, "env-jobs.txt");
  await Deno.writeTextFile(envList, 'echo "token in the job: ${VICO_JOIN:-none}"\n');
  const again = await startManager([
    ...["--jobs", envList, "--results", join(dir.path, "res2"), "--port", "0", "--enroll", "--state-dir", state],
  ]);
  await using _a = again.manager;
  const second = parseJoinToken(await tokenOf(again.manager));
  assert.equal(second.fingerprint, parsed.fingerprint);
  assert.equal(second.secret, parsed.secret);
  assert.match(again.manager.stderr, /Loaded key, certificate/);
  // The environment variable, for systemd units.
  await using unit = EntryProcess.spawn("runner.ts", ["--workers", "2"], {
    env: { VICO_JOIN: formatJoinToken({ ...parsed, manager: `127.0.0.1:${again.port}` }) },
  });
  assert.equal((await unit.exit()).code, 0, unit.stderr);
  assert.equal((await again.manager.exit()).code, 0);
  const [envJob] = readRecords(join(dir.path, "res2"));
  assert.equal(
    new TextDecoder().decode(readOutput(join(dir.path, "res2"), envJob)),
    "token in the job: none\n",
    "the runner takes VICO_JOIN out of its jobs' environment",
  );
});

Deno.test("a join token whose fingerprint does not match: refused before a byte of the protocol is sent", async () => {
  // A stranger's TLS server that records every application byte it gets.
  const identity = await makeSelfSignedIdentity(["localhost"]);
  const listener = Deno.listenTls({ hostname: "127.0.0.1", port: 0, cert: identity.certPem, key: identity.keyPem });
  let received = 0, connections = 0;
  const serving = (async () => {
    for await (const conn of listener) {
      connections++;
      (async () => {
        const buf = new Uint8Array(4096);
        try {
          for (let n = await conn.read(buf); n !== null; n = await conn.read(buf)) received += n;
        } catch {
          // The runner hung up mid-handshake.
        }
        conn.close();
      })();
    }
  })().catch(() => {});
  const token = formatJoinToken({
    manager: `127.0.0.1:${listener.addr.port}`,
    fingerprint: "ab".repeat(32),
    secret: "0123456789abcdef0123456789abcdef",
  });
  await using runner = EntryProcess.spawn("runner.ts", ["--join", token, "--workers", "1"]);
  const status = await runner.exit();
  assert.equal(status.code, 4, runner.stderr);
  assert.match(runner.stderr, /fingerprint/i);
  assert.ok(connections >= 1, "it did reach the server");
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(received, 0, "not one application byte reached the impostor");
  listener.close();
  await serving;
});

Deno.test("a plain runner against a TLS manager, and a TLS runner against a plain one, fail cleanly; the managers go on", async () => {
  await using dir = await tempDir();
  const list = await writeJobList(dir.path, ["echo a", "echo b"]);
  const state = join(dir.path, "state");
  {
    const { manager, port, results } = await startManagerAgain({ list, results: join(dir.path, "tls-res") }, [
      ...["--enroll", "--state-dir", state],
    ]);
    await using _m = manager;
    const token = await tokenOf(manager);
    await using plain = startRunner(port, ["--workers", "1"]);
    const ps = await plain.exit();
    assert.notEqual(ps.code, 0);
    assert.match(plain.stderr, /TLS/, "says what is wrong");
    onlyRunRecords(results);
    await using good = EntryProcess.spawn("runner.ts", ["--join", token, "--workers", "1"]);
    assert.equal((await good.exit()).code, 0, good.stderr);
    assert.equal((await manager.exit()).code, 0, manager.stderr);
    assert.match(manager.stderr, /Refusing connection from 127\.0\.0\.1:\d+: .*TLS/);
  }
  {
    const { manager, port, results } = await startManagerAgain({ list, results: join(dir.path, "plain-res") });
    await using _m = manager;
    const token = parseJoinToken(await Deno.readTextFile(join(state, "join-token")));
    await using tls = EntryProcess.spawn("runner.ts", [
      ...["--join", formatJoinToken({ ...token, manager: `127.0.0.1:${port}` }), "--workers", "1"],
    ]);
    const ts = await tls.exit();
    assert.equal(ts.code, 4, tls.stderr);
    assert.match(tls.stderr, /TLS/);
    onlyRunRecords(results);
    await using good = startRunner(port, ["--workers", "1"]);
    assert.equal((await good.exit()).code, 0, good.stderr);
    assert.equal((await manager.exit()).code, 0, manager.stderr);
  }
});

Deno.test("a wrong secret on either side is refused before any job crosses; the job stays pending", async () => {
  await using dir = await tempDir();
  const marker = join(dir.path, "pwned");
  const good = await writeSecret(join(dir.path, "good"), "a".repeat(32));
  const bad = await writeSecret(join(dir.path, "bad"), "b".repeat(32));
  const jobs = [`echo ran >> ${join(dir.path, "ran.log")}`];
  const { manager, port, results } = await startManagerOn(dir.path, jobs, ["--secret-file", good]);
  await using _m = manager;
  // A runner that does not know the secret.
  await using intruder = startRunner(port, ["--workers", "1", "--secret-file", bad]);
  assert.equal((await intruder.exit()).code, 4, intruder.stderr);
  assert.match(intruder.stderr, /failed to prove it knows the secret/, "the manager's proof does not check out");
  // One that knows no secret at all, in both protocols.
  for (const proto of ["text", "binary"]) {
    await using anon = startRunner(port, ["--workers", "1", "--protocol", proto]);
    const s = await anon.exit();
    assert.equal(s.code, 4, anon.stderr);
    assert.match(anon.stderr, /authenticat/);
  }
  // A hand-made client that only pretends: plain hail, then PETO.
  {
    using p = await LinePeer.connect(port);
    await p.line("SALUTON MI mallory; 1.1");
    await p.line("PETO");
    const rest = await p.rest();
    assert.match(rest.join("\n"), /^ERARO authentication required/);
  }
  onlyRunRecords(results);
  assert.equal(await Deno.stat(join(dir.path, "ran.log")).catch(() => null), null, "nothing ran");
  await using honest = startRunner(port, ["--workers", "1", "--secret-file", good]);
  assert.equal((await honest.exit()).code, 0, honest.stderr);
  assert.equal((await manager.exit()).code, 0, manager.stderr);
  const [record] = readRecords(results);
  assert.equal(record.attempt, 1, "the refused runners never held it");

  // A rogue manager with the wrong secret cannot get a job run on the runner.
  const rogueList = await writeJobList(dir.path, [`touch ${marker}`]);
  const rogue = await startManagerAgain({ list: rogueList, results: join(dir.path, "rogue") }, ["--secret-file", bad]);
  await using _r = rogue.manager;
  for (const proto of ["text", "binary"]) {
    await using victim = startRunner(rogue.port, ["--workers", "1", "--secret-file", good, "--protocol", proto]);
    assert.equal((await victim.exit()).code, 4, victim.stderr + "\n---\n" + rogue.manager.stderr);
    assert.match(victim.stderr, /failed to prove it knows the secret; refusing it, nothing was sent/);
  }
  assert.equal(await Deno.stat(marker).catch(() => null), null, "the rogue's job never ran");
});

/** A TCP relay that records both directions. */
function recordingRelay(target: number): { port: number; up: Uint8Array[]; down: Uint8Array[]; close(): void } {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const up: Uint8Array[] = [], down: Uint8Array[] = [];
  (async () => {
    for await (const client of listener) {
      const server = await Deno.connect({ hostname: "127.0.0.1", port: target });
      const pipe = async (from: Deno.Conn, to: Deno.Conn, log: Uint8Array[]) => {
        const buf = new Uint8Array(65536);
        try {
          for (let n = await from.read(buf); n !== null; n = await from.read(buf)) {
            log.push(buf.slice(0, n));
            await to.write(buf.subarray(0, n));
          }
        } catch {
          // Either side went away.
        }
        try {
          to.closeWrite();
        } catch {
          // Already closed.
        }
      };
      Promise.all([pipe(client, server, up), pipe(server, client, down)]).then(() => {
        client.close();
        server.close();
      });
    }
  })().catch(() => {});
  return { port: listener.addr.port, up, down, close: () => listener.close() };
}

const concat = (parts: Uint8Array[]) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) out.set(p, (off += p.length) - p.length);
  return out;
};

Deno.test("a recorded authentication transcript replayed to the manager, or to a runner, is refused", async () => {
  await using dir = await tempDir();
  const ran = join(dir.path, "ran.log");
  const list = await writeJobList(dir.path, [`echo ran >> ${ran}`]);
  const secret = await writeSecret(join(dir.path, "secret"), "s".repeat(40));
  // Record an honest session, secret only (no TLS: an eavesdropper sees it all).
  const first = await startManagerAgain({ list, results: join(dir.path, "r1") }, ["--secret-file", secret]);
  await using _f = first.manager;
  const relay = recordingRelay(first.port);
  await using honest = startRunner(relay.port, ["--workers", "1", "--secret-file", secret]);
  assert.equal((await honest.exit()).code, 0, honest.stderr);
  assert.equal((await first.manager.exit()).code, 0);
  relay.close();
  const up = concat(relay.up), down = concat(relay.down);
  assert.match(dec.decode(up), /^VICO\/1 hello proto=text .*nonce=[0-9a-f]{64}\nVICO\/1 proof [0-9a-f]{64}\n/);
  assert.match(dec.decode(down), /^VICO\/1 auth nonce=[0-9a-f]{64} proof=[0-9a-f]{64}\nVICO\/1 ok/);
  assert.equal(await Deno.readTextFile(ran), "ran\n");

  // Replay the runner's side to a manager with the same secret.
  const second = await startManagerAgain({ list, results: join(dir.path, "r2") }, ["--secret-file", secret]);
  const { results } = second;
  await using _s = second.manager;
  {
    using p = await LinePeer.connect(second.port);
    await p.send(up);
    const rest = await p.rest();
    assert.match(rest[0], /^VICO\/1 auth nonce=/, "a fresh challenge");
    assert.match(rest[1], /^VICO\/1 no authentication failed/);
    assert.equal(rest.length, 2, `no job line: ${rest}`);
  }
  await second.manager.waitFor(/Refusing connection from .*authentication failed/);
  onlyRunRecords(results);

  // Replay the manager's side to a runner with the same secret.
  const impostor = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const replaying = (async () => {
    const conn = await impostor.accept();
    const buf = new Uint8Array(4096);
    await conn.read(buf); // the runner's hello
    await conn.write(down).catch(() => {});
    while ((await conn.read(buf).catch(() => null)) !== null);
    conn.close();
  })();
  await using victim = startRunner(impostor.addr.port, ["--workers", "1", "--secret-file", secret]);
  assert.equal((await victim.exit()).code, 4, victim.stderr);
  assert.match(victim.stderr, /failed to prove it knows the secret/);
  await replaying;
  impostor.close();
  assert.equal(await Deno.readTextFile(ran), "ran\n", "the replayed job did not run again");
  second.manager.kill("SIGKILL");
});

Deno.test("secret files, keys and token files open to other users, or too short, are refused on both sides", async () => {
  await using dir = await tempDir();
  const list = await writeJobList(dir.path, ["true"]);
  const loose = await writeSecret(join(dir.path, "loose"), "x".repeat(32), 0o644);
  const short = await writeSecret(join(dir.path, "short"), "tooshort");
  const cases: [string, string[], RegExp][] = [
    ["manager.ts", ["--jobs", list, "--secret-file", loose], /open to other users \(mode 644\).*chmod 600/],
    ["runner.ts", ["--manager", "127.0.0.1:1", "--secret-file", loose], /open to other users \(mode 644\)/],
    ["manager.ts", ["--jobs", list, "--secret-file", short], /is 8 bytes; use at least 16/],
    ["runner.ts", ["--manager", "127.0.0.1:1", "--secret-file", short], /is 8 bytes; use at least 16/],
    ["runner.ts", ["--join-file", loose], /join token file .* open to other users/],
  ];
  for (const [entry, args, why] of cases) {
    await using p = EntryProcess.spawn(entry, args);
    const s = await p.exit();
    assert.equal(s.code, 2, `${entry} ${args.join(" ")}: ${p.stderr}`);
    assert.match(p.stderr, why);
  }
  const state = join(dir.path, "state");
  await Deno.mkdir(state, { mode: 0o755 });
  await Deno.chmod(state, 0o755);
  await using m = EntryProcess.spawn("manager.ts", ["--jobs", list, "--enroll", "--state-dir", state]);
  assert.equal((await m.exit()).code, 3, m.stderr);
  assert.match(m.stderr, /state directory .* open to other users.*chmod 700/);
});

Deno.test({
  name: "a root runner refuses to run jobs as root unless told; --user runs them as that user",
  ignore: Deno.uid() !== 0,
  async fn() {
    await using dir = await tempDir();
    const { manager, port, results, list } = await startManagerOn(dir.path, ["id -u; id -g; id -G"]);
    await using _m = manager;
    await using refused = startRunner(port, ["--workers", "1"], { env: { VICO_ALLOW_ROOT: "" } });
    assert.equal((await refused.exit()).code, 2);
    assert.match(refused.stderr, /root.*--user.*--allow-root/s);
    for (const proto of ["text", "binary"]) {
      if (proto === "binary") {
        const again = await startManagerAgain({ list, results: results + "-b" });
        await using _a = again.manager;
        await using nobody = startRunner(again.port, ["--workers", "1", "--user", "nobody", "--protocol", proto], {
          env: { VICO_ALLOW_ROOT: "" },
        });
        assert.equal((await nobody.exit()).code, 0, nobody.stderr);
        assert.equal((await again.manager.exit()).code, 0, again.manager.stderr);
        const [r] = readRecords(results + "-b");
        assert.equal(dec.decode(readOutput(results + "-b", r)), "65534\n65534\n65534\n");
      } else {
        await using nobody = startRunner(port, ["--workers", "1", "--user", "nobody"], {
          env: { VICO_ALLOW_ROOT: "" },
        });
        assert.equal((await nobody.exit()).code, 0, nobody.stderr);
        assert.equal((await manager.exit()).code, 0, manager.stderr);
        const [r] = readRecords(results);
        assert.equal(dec.decode(readOutput(results, r)), "65534\n65534\n65534\n", "no supplementary groups kept");
      }
    }
  },
});

Deno.test("the manager closes connections over --max-connections at once; runners within it finish", async () => {
  await using dir = await tempDir();
  const { manager, port } = await startManagerOn(dir.path, ["echo capped"], ["--max-connections", "2"]);
  await using _m = manager;
  const idle = [
    await Deno.connect({ hostname: "127.0.0.1", port }),
    await Deno.connect({ hostname: "127.0.0.1", port }),
  ];
  await new Promise((r) => setTimeout(r, 100));
  {
    using over = await LinePeer.connect(port);
    const t0 = performance.now();
    assert.deepEqual(await over.rest(), []);
    assert.ok(performance.now() - t0 < 2000, "closed at once");
  }
  await manager.waitFor(/2 connections already \(--max-connections\)/);
  for (const c of idle) c.close();
  await new Promise((r) => setTimeout(r, 100));
  await using runner = startRunner(port, ["--workers", "1"]);
  assert.equal((await runner.exit()).code, 0, runner.stderr);
  assert.equal((await manager.exit()).code, 0, manager.stderr);
});
