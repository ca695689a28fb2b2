/**
 * `runner`: joins a vico manager and runs the jobs it hands out.
 *
 * @module
 */

import { VicoError } from "../core/errors.ts";
import { DEFAULT_PORT } from "../protocol/messages.ts";
import { Runner } from "../runner/runner.ts";
import { runnerStatus, ServiceNotifier } from "../runner/service/sd_notify.ts";
import { complain, ExitCode, intFlag, isLoopback, parseFlags, parseHostPort } from "./flags.ts";
import { SharedSecret } from "../protocol/auth.ts";
import { type JoinToken, parseJoinToken } from "../protocol/join_token.ts";
import { resolveUser, type RunAs } from "../runner/exec/run_as.ts";
import { JobCgroups, type JobLimits, parseJobLimits } from "../runner/exec/job_cgroup.ts";
import { tlsConnector, type TlsTrust } from "../transport/tls.ts";
import { readPrivateFile, readSecretFile } from "../transport/secret_file.ts";
import { logger, loggingFromFlags, setupLogging } from "../util/log.ts";
import { versionText } from "./version.ts";
import { parseDuration } from "../core/duration.ts";
import { parseSize } from "../core/size.ts";

const USAGE = `Usage: runner --manager HOST[:PORT] [options]
       runner --join TOKEN [options]

Joins a vico manager and runs the jobs it hands out, each in its own process
group, sending back the exit status and the output (stdout and stderr merged).

With the text protocol (the default) jobs are shell command lines, run as
'/bin/sh -c <job>', N at a time over one connection. With --protocol binary
the runner is a node: N sessions, each staging one task's files into a fresh
directory, running its programs, returning the files asked for, and joining
again for the next task.

Examples:
  runner --join-file ~/.vico-join --workers 16  # the token a manager printed, mode 600
  runner --manager 127.0.0.1:7707 -w 4        # a manager on this machine
  VICO_MANAGER=head:7707 VICO_JOIN_FILE=/etc/vico/join runner --persist
  runner --manager head:7707 --protocol binary --modules blast -w 8

  -m, --manager HOST[:PORT]  The manager (port ${DEFAULT_PORT} if omitted; with a
                             join token, overrides the address it names).
  -w, --workers N            Jobs to run at once. Default: 1.
  -n, --name NAME            Name announced to the manager. Default: this
                             machine's host name.
      --max-output SIZE      Largest output a job may write (e.g. 500M, 16G).
                             A job that writes more is killed and reported with
                             status 125 and a note. Default: 16G.
      --job-memory SIZE      Run each job in a cgroup of its own with at most
                             SIZE of memory (e.g. 512M) and no swap: a job
                             over it is killed alone by the kernel and
                             reported with status 137 and a note. Needs
                             cgroup v2 with the memory controller and the
                             runner's cgroup delegated to it (a systemd
                             service with Delegate=yes); without them the
                             runner does not start (exit status 2).
      --job-cpus N           Likewise, at most N CPUs' worth of time per job
                             (e.g. 2 or 0.5); needs the cpu controller.
      --persist              Run as a service: keep running when the manager
                             goes away or has no jobs (reconnecting with
                             backoff); running jobs carry on, and results that
                             finish meanwhile are kept on disk and delivered
                             when a manager is back.
      --state-dir DIR        Where --persist keeps the runner's id and its
                             undelivered results. Default:
                             $XDG_STATE_HOME/vico/runner or ~/.local/state/vico/runner.
                             A kept result no manager takes (refused 3 times
                             in a row, or over its --max-output) is moved to
                             DIR/set-aside/ and never blocks other work.
      --retry-max DURATION   With --persist, the longest wait between attempts
                             to reach the manager (backoff doubles from 0.5s,
                             with jitter), and the wait before asking again
                             after the manager had no more jobs. Default: 30s.
      --plain                Do not offer the vico extension (identity, pulses,
                             timeouts); speak only the draft's protocol.
  -P, --protocol text|binary Protocol to speak. Default: text.
      --modules A,B,...      Binary: modules this node offers; it is given
                             only tasks whose modules it has.
      --work-dir DIR         Binary: where task directories are made.
                             Default: a fresh temporary directory.
      --keep-task-dirs       Binary: keep each task's directory (debugging).

Security (docs/security.md):
  -j, --join TOKEN           Join with the token a manager printed: its address,
                             its certificate's fingerprint (TLS, pinned) and
                             the shared secret. Any local user can read it in
                             /proc/PID/cmdline: prefer --join-file FILE, or
                             the environment variable VICO_JOIN.
      --join-file FILE       Read the join token from FILE (mode 600).
      --tls                  Connect with TLS; trust the system's CA store.
      --tls-ca FILE          Connect with TLS; trust the CA certificate(s) in
                             FILE (PEM). The manager's certificate must name
                             the host given to --manager.
      --secret-file FILE     Prove this runner knows the shared secret in FILE
                             (mode 600), and require the manager to prove it
                             too, before any job crosses.
      --insecure             Allow a plain, unauthenticated connection to a
                             manager that is not on loopback (anyone who can
                             reach this node could pose as the manager).
      --user USER            Run jobs as USER (the runner starts as root).
      --allow-root           Run jobs as root. Without it, a runner started as
                             root refuses to start unless --user is given (the
                             environment variable VICO_ALLOW_ROOT=1 also
                             allows it).
      --max-file SIZE        Binary: largest file the manager may stage.
                             Default: 16G. Logs obey --max-output.

  -q, --quiet                Log only warnings and errors.
  -v, --verbose              Log debugging detail (every job).
      --log-level LEVEL      trace, debug, info (default), warning or error.
      --log-format FORMAT    text (default; under journald: journal, without
                             times and with priorities), json (one JSON
                             object per line) or journal.
  -V, --version              Print the version and the protocol versions.
  -h, --help                 Show this help.

Every flag can also be set in the environment as VICO_ and its name in
capitals, '-' as '_' (VICO_MANAGER=host:7707, VICO_WORKERS=8,
VICO_PERSIST=1, VICO_JOIN_FILE=/etc/vico/join); the command line wins.
VICO_JOIN holds a join token itself.

Signals: the first SIGINT or SIGTERM stops taking jobs and lets running ones
finish and be reported (with none running, the runner exits at once); a
second one kills them.

Exit status:
  0  the manager had no more jobs (clean FINO), or stopped by a signal after
     its running jobs were reported
  1  the connection was lost, or the manager dropped this runner, or broke
     the protocol; running jobs were killed
  2  usage error
  3  the manager refused this runner before it ran anything (a protocol
     version it does not speak, or no remaining task fits this node's
     modules; a node that has done work and is then refused exits 0)
  4  the manager could not be verified (its TLS certificate or its proof of
     the secret) or did not accept this runner's proof: nothing ran
  130/143  a second SIGINT/SIGTERM killed running jobs
`;

/** Runs the runner command line; returns the exit code. */
export async function main(args: string[]): Promise<number> {
  let flags;
  try {
    flags = parseFlags(
      args,
      {
        manager: { type: "string", short: "m" },
        workers: { type: "string", short: "w" },
        name: { type: "string", short: "n" },
        "max-output": { type: "string" },
        "job-memory": { type: "string" },
        "job-cpus": { type: "string" },
        protocol: { type: "string", short: "P" },
        modules: { type: "string" },
        "work-dir": { type: "string" },
        "keep-task-dirs": { type: "boolean" },
        persist: { type: "boolean" },
        "retry-max": { type: "string" },
        "state-dir": { type: "string" },
        plain: { type: "boolean" },
        join: { type: "string", short: "j" },
        "join-file": { type: "string" },
        tls: { type: "boolean" },
        "tls-ca": { type: "string" },
        "secret-file": { type: "string" },
        insecure: { type: "boolean" },
        user: { type: "string" },
        "allow-root": { type: "boolean" },
        "max-file": { type: "string" },
        quiet: { type: "boolean", short: "q" },
        verbose: { type: "boolean", short: "v" },
        "log-level": { type: "string" },
        "log-format": { type: "string" },
        version: { type: "boolean", short: "V" },
        help: { type: "boolean", short: "h" },
      },
      ["help", "version", "join"],
    );
  } catch (err) {
    return complain("runner", `${(err as Error).message}\n\n${USAGE}`, ExitCode.USAGE);
  }
  if (flags.help) {
    console.log(USAGE);
    return ExitCode.OK;
  }
  if (flags.version) {
    console.log(versionText("runner"));
    return ExitCode.OK;
  }
  let address, workers, maxOutput, maxFile, protocol: "text" | "binary", modules: string[] | undefined;
  let jobLimits: JobLimits | undefined;
  let security: RunnerSecurity;
  try {
    security = await runnerSecurity(flags);
    if (flags.manager === undefined && security.token === undefined) {
      throw new VicoError("USAGE", "--manager HOST[:PORT] (or --join TOKEN) is required");
    }
    address = parseHostPort(flags.manager ?? security.token!.manager, DEFAULT_PORT);
    workers = intFlag("workers", flags.workers, 1, 1);
    maxOutput = flags["max-output"] === undefined ? undefined : parseSize(flags["max-output"]);
    maxFile = flags["max-file"] === undefined ? undefined : parseSize(flags["max-file"]);
    jobLimits = parseJobLimits(flags["job-memory"], flags["job-cpus"]);
    protocol = (flags.protocol ?? "text") as "text" | "binary";
    if (protocol !== "text" && protocol !== "binary") {
      throw new VicoError("USAGE", `--protocol must be text or binary, got ${JSON.stringify(flags.protocol)}`);
    }
    modules = flags.modules?.split(",").map((m) => m.trim()).filter((m) => m.length > 0);
    if (protocol === "text" && (modules !== undefined || flags["work-dir"] || flags["keep-task-dirs"])) {
      throw new VicoError("USAGE", "--modules, --work-dir and --keep-task-dirs need --protocol binary");
    }
    for (const m of modules ?? []) {
      if (!/^[A-Za-z0-9][A-Za-z0-9._+\-]*$/.test(m)) {
        throw new VicoError("USAGE", `Bad module name ${JSON.stringify(m)}`);
      }
    }
    if (flags.name !== undefined && (flags.name === "" || /[\r\n]/.test(flags.name))) {
      throw new VicoError("USAGE", "--name must be non-empty and on one line");
    }
    if (flags.plain && security.secret !== undefined) {
      throw new VicoError("USAGE", "--plain cannot authenticate: the secret travels in the vico extension");
    }
    if (security.trust === undefined && security.secret === undefined && !isLoopback(address.hostname)) {
      if (!flags.insecure) {
        throw new VicoError(
          "UNSAFE",
          `Refusing to take jobs from ${address.hostname} over plain, unauthenticated TCP: anyone who can reach ` +
            "this node could pose as the manager and run commands here. Use --join TOKEN (the manager prints " +
            "one), or --tls-ca/--secret-file, or --insecure to accept the risk",
        );
      }
    }
  } catch (err) {
    const usage = err instanceof VicoError && err.code === "USAGE" ? `\n\n${USAGE}` : "";
    return complain("runner", `${(err as Error).message}${usage}`, ExitCode.USAGE);
  }
  let logging;
  try {
    logging = loggingFromFlags(flags);
  } catch (err) {
    return complain("runner", (err as Error).message, ExitCode.USAGE);
  }
  await setupLogging(logging);
  const log = logger("runner");
  if (security.trust === undefined && !isLoopback(address.hostname)) {
    log.warn(
      security.secret === undefined
        ? "--insecure: jobs, outputs and files cross the network in plain text, and nothing proves who the manager is"
        : "No TLS: the secret proves who the manager is, but jobs and outputs cross the network in plain text " +
          "and an attacker on the path could alter them (add --tls-ca, or use a join token)",
    );
  }
  let runAs: RunAs | undefined;
  try {
    runAs = await jobUser(flags.user, flags["allow-root"] ?? false);
  } catch (err) {
    return complain("runner", (err as Error).message, ExitCode.USAGE);
  }
  // --job-memory/--job-cpus: refuse to start where they cannot be enforced.
  let jobCgroups: JobCgroups | undefined;
  if (jobLimits !== undefined) {
    try {
      jobCgroups = await JobCgroups.setUp(jobLimits, { runAs: runAs !== undefined });
    } catch (err) {
      return complain("runner", (err as Error).message, ExitCode.USAGE);
    }
  }

  // Under systemd (Type=notify): READY=1 once joined, STATUS=, WATCHDOG=1, STOPPING=1.
  const notifier = await ServiceNotifier.fromEnv();
  const managerAddress = `${address.hostname}:${address.port}`;
  const runner = new Runner({
    ...address,
    workers,
    name: flags.name,
    limits: {
      ...(maxOutput === undefined ? {} : { maxOutputBytes: maxOutput }),
      ...(maxFile === undefined ? {} : { maxFileBytes: maxFile }),
    },
    protocol,
    modules,
    workDir: flags["work-dir"],
    keepTaskDirs: flags["keep-task-dirs"],
    persist: flags.persist,
    backoff: flags["retry-max"] === undefined
      ? undefined
      : { initialMs: 500, maxMs: Math.max(500, parseDuration(flags["retry-max"])) },
    stateDir: flags["state-dir"],
    extension: !flags.plain,
    secret: security.secret,
    connect: security.trust === undefined ? undefined : tlsConnector(security.trust),
    runAs,
    jobCgroups,
    onConnection: notifier &&
      ((a) =>
        a.connected
          ? notifier.ready(runnerStatus(a, managerAddress))
          : notifier.status(runnerStatus(a, managerAddress))),
  });
  const statusTimer = notifier &&
    setInterval(() => notifier.status(runnerStatus(runner.activity, managerAddress)), 1000);
  if (statusTimer !== undefined) Deno.unrefTimer(statusTimer);
  // First SIGINT/SIGTERM: MASTERSTOP (finish and report running jobs, take
  // no new ones). A second one kills the running jobs.
  let killedBy: Deno.Signal | undefined;
  let signals = 0;
  const handlers = (["SIGINT", "SIGTERM"] as const).map((sig) => {
    const handler = () => {
      if (++signals === 1 && runner.activity.running === 0) {
        log.warn("{sig}: no job is running; stopping", { sig });
        runner.stop();
        notifier?.stopping();
      } else if (signals === 1) {
        log.warn("{sig}: taking no new jobs; running jobs finish and are reported (send it again to kill them)", {
          sig,
        });
        runner.stop();
        notifier?.stopping();
      } else {
        log.warn("{sig} again: killing running jobs", { sig });
        killedBy = sig;
        runner.abort(`stopped by ${sig}`);
      }
    };
    Deno.addSignalListener(sig, handler);
    return [sig, handler] as const;
  });
  const end = await runner.run();
  await jobCgroups?.close();
  clearInterval(statusTimer);
  await notifier?.close();
  for (const [sig, handler] of handlers) Deno.removeSignalListener(sig, handler);
  if (killedBy !== undefined) return 128 + (killedBy === "SIGINT" ? 2 : 15);
  switch (end.kind) {
    case "finished":
      log.info("Manager has no more jobs; ran {jobs} job(s)", { jobs: end.jobs });
      return ExitCode.OK;
    case "stopped":
      log.info("Stopped; ran {jobs} job(s)", { jobs: end.jobs });
      return ExitCode.OK;
    case "refused":
      log.error("{reason}", { reason: end.reason });
      return /authenticat/.test(end.reason) ? ExitCode.UNTRUSTED : ExitCode.CANNOT_START;
    case "untrusted":
      log.error("{reason}", { reason: end.reason });
      return ExitCode.UNTRUSTED;
    case "failed":
      log.error("{reason} (ran {jobs} job(s))", { reason: end.reason, jobs: end.jobs });
      return ExitCode.FAILED;
  }
}

/** How this runner proves itself and checks its manager. */
interface RunnerSecurity {
  /** The join token, if one was given. */
  token?: JoinToken;
  /** How the manager's TLS certificate is checked (none: plain TCP). */
  trust?: TlsTrust;
  /** The shared secret (none: no authentication). */
  secret?: SharedSecret;
}

/** Reads the security flags: a join token, or TLS trust and a secret file. */
async function runnerSecurity(flags: {
  join?: string;
  "join-file"?: string;
  tls?: boolean;
  "tls-ca"?: string;
  "secret-file"?: string;
}): Promise<RunnerSecurity> {
  // The token carries the secret: jobs must not inherit it.
  const envToken = Deno.env.get("VICO_JOIN");
  Deno.env.delete("VICO_JOIN");
  const tokenText = flags.join ??
    (flags["join-file"] === undefined
      ? undefined
      : new TextDecoder().decode(await readPrivateFile(flags["join-file"], "join token file"))) ??
    envToken;
  if (tokenText !== undefined && tokenText.trim() !== "") {
    if (flags.tls || flags["tls-ca"] !== undefined || flags["secret-file"] !== undefined) {
      throw new VicoError("USAGE", "A join token carries TLS and the secret: drop --tls, --tls-ca and --secret-file");
    }
    const token = parseJoinToken(tokenText);
    return {
      token,
      trust: { kind: "pinned", fingerprint: token.fingerprint },
      secret: await SharedSecret.from(new TextEncoder().encode(token.secret)),
    };
  }
  let trust: TlsTrust | undefined;
  if (flags["tls-ca"] !== undefined) {
    let pem: string;
    try {
      pem = await Deno.readTextFile(flags["tls-ca"]);
    } catch (err) {
      throw new VicoError("USAGE", `Cannot read --tls-ca ${flags["tls-ca"]}: ${(err as Error).message}`);
    }
    if (!pem.includes("-----BEGIN CERTIFICATE-----")) {
      throw new VicoError("USAGE", `--tls-ca ${flags["tls-ca"]} holds no PEM certificate`);
    }
    trust = { kind: "ca", caCerts: [pem] };
  } else if (flags.tls) {
    trust = { kind: "ca", caCerts: [] };
  }
  const secret = flags["secret-file"] === undefined ? undefined : await readSecretFile(flags["secret-file"]);
  return { trust, secret };
}

/**
 * The user jobs run as: `--user`, or the runner's own, which must not be
 * root unless `allowRoot`.
 */
async function jobUser(user: string | undefined, allowRoot: boolean): Promise<RunAs | undefined> {
  const uid = Deno.uid();
  if (user !== undefined) {
    const runAs = await resolveUser(user);
    if (uid === runAs.uid) return undefined;
    if (uid !== 0) {
      throw new VicoError("USAGE", `--user ${user} needs the runner to start as root (it runs as uid ${uid})`);
    }
    return runAs;
  }
  if (uid === 0 && !allowRoot) {
    throw new VicoError(
      "UNSAFE",
      "Refusing to run jobs as root: a manager's jobs would own this machine. Give --user USER to run them as " +
        "that user, or --allow-root if that is really meant",
    );
  }
  return undefined;
}
