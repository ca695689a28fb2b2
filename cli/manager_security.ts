/**
 * How the `manager` command secures its port: TLS and a secret from files,
 * enrollment (a certificate and secret of its own, and a join token for
 * runners), or, on loopback or with `--insecure`, neither; and the warnings
 * each weaker choice deserves.
 *
 * @module
 */

import type { Logger } from "@logtape/logtape";
import { VicoError } from "../core/errors.ts";
import { defaultStateDir } from "../io/state_dir.ts";
import { enroll, type Enrollment, writeJoinToken } from "../manager/sessions/enrollment.ts";
import type { SharedSecret } from "../protocol/auth.ts";
import { readPrivateFile, readSecretFile } from "../transport/secret_file.ts";
import type { TlsIdentity } from "../transport/tls.ts";
import { CommandFailure, ExitCode } from "./exit_code.ts";
import { isLoopback } from "./flags.ts";
import { isWildcard, type ManagerFlags } from "./manager_flags.ts";

/** What the manager serves with. */
export interface ManagerSecurity {
  /** Its TLS certificate and key (none: plain TCP). */
  tls?: TlsIdentity;
  /** The shared secret runners must prove (none: no authentication). */
  secret?: SharedSecret;
  /** The enrollment it made or loaded, whose join token runners use. */
  enrollment?: Enrollment;
}

/**
 * Reads or makes what the manager serves with, and warns about a weak choice.
 *
 * @throws {CommandFailure} `USAGE` when a file cannot be read, `CANNOT_START` when enrollment fails.
 */
export async function managerSecurity(flags: ManagerFlags, hostname: string, log: Logger): Promise<ManagerSecurity> {
  let tls: TlsIdentity | undefined, secret: SharedSecret | undefined;
  const wantEnroll = flags.enroll ||
    (!isLoopback(hostname) && !flags.insecure && flags["tls-cert"] === undefined &&
      flags["secret-file"] === undefined);
  try {
    if (flags["tls-cert"] !== undefined && flags["tls-key"] !== undefined) {
      tls = {
        certPem: await Deno.readTextFile(flags["tls-cert"]).catch((err) => {
          throw new VicoError("USAGE", `Cannot read --tls-cert ${flags["tls-cert"]}: ${err.message}`);
        }),
        keyPem: new TextDecoder().decode(await readPrivateFile(flags["tls-key"], "TLS private key")),
      };
    }
    if (flags["secret-file"] !== undefined) secret = await readSecretFile(flags["secret-file"]);
  } catch (err) {
    throw new CommandFailure(ExitCode.USAGE, (err as Error).message);
  }
  let enrollment: Enrollment | undefined;
  if (wantEnroll) {
    try {
      enrollment = await enroll({
        stateDir: flags["state-dir"] ?? defaultStateDir("manager"),
        hostnames: [Deno.hostname(), ...(isWildcard(hostname) ? [] : [hostname])],
      });
    } catch (err) {
      throw new CommandFailure(ExitCode.CANNOT_START, `cannot enroll: ${(err as Error).message}`);
    }
    ({ tls, secret } = enrollment);
    log.info(
      enrollment.created
        ? "Enrolled: new key, certificate (SHA-256 {fp}) and secret in {dir}"
        : "Loaded key, certificate (SHA-256 {fp}) and secret from {dir}",
      { fp: enrollment.fingerprint, dir: enrollment.stateDir },
    );
  }
  if (!wantEnroll && !isLoopback(hostname)) {
    if (tls === undefined && secret === undefined) {
      log.warn(
        "--insecure: serving {host} with neither TLS nor a secret; anyone who reaches the port can take jobs, " +
          "read them and forge results",
        { host: hostname },
      );
    } else if (secret === undefined) {
      log.warn(
        "TLS without --secret-file: runners know who the manager is, but any client that reaches the port " +
          "can take jobs and forge results",
      );
    } else if (tls === undefined) {
      log.warn(
        "--secret-file without TLS: both sides are authenticated, but jobs and outputs cross the network in " +
          "plain text and an attacker on the path could alter them",
      );
    }
  }
  return { tls, secret, enrollment };
}

/**
 * Writes the join token for `address` and shows it: on stdout, on a line of
 * its own, since it is what a user copies; not inside a command line to
 * paste, as a process's arguments are in /proc/PID/cmdline for every local user.
 *
 * @throws {CommandFailure} `CANNOT_START` when the token cannot be written.
 */
export async function announceJoinToken(enrollment: Enrollment, address: string, log: Logger): Promise<void> {
  let written;
  try {
    written = await writeJoinToken(enrollment, address);
  } catch (err) {
    throw new CommandFailure(ExitCode.CANNOT_START, `cannot write the join token: ${(err as Error).message}`);
  }
  console.log(
    "Start runners with this join token in a file (mode 600) or the environment, not as an argument\n" +
      "(every local user can read a process's arguments):\n" +
      "  runner --workers N --join-file FILE\n" +
      "  VICO_JOIN=... runner --workers N\n" +
      `Join token (a credential, like a password):\n  ${written.token}`,
  );
  log.info("The join token is also in {path} (runner --join-file); it is a credential, keep it private", {
    path: written.path,
  });
}
