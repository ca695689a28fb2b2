/**
 * How the `runner` command checks its manager and proves itself (a join
 * token, or TLS trust and a secret file), and which user its jobs run as.
 *
 * @module
 */

import { VicoError } from "../core/errors.ts";
import { SharedSecret } from "../protocol/auth.ts";
import { type JoinToken, parseJoinToken } from "../protocol/join_token.ts";
import { resolveUser, type RunAs } from "../runner/exec/run_as.ts";
import { unsetInheritedVariables } from "../runner/exec/process_runner.ts";
import { readPrivateFile, readSecretFile } from "../transport/secret_file.ts";
import type { TlsTrust } from "../transport/tls.ts";

/** How this runner proves itself and checks its manager. */
export interface RunnerSecurity {
  /** The join token, if one was given. */
  token?: JoinToken;
  /** How the manager's TLS certificate is checked (none: plain TCP). */
  trust?: TlsTrust;
  /** The shared secret (none: no authentication). */
  secret?: SharedSecret;
}

/** Reads the security flags: a join token, or TLS trust and a secret file. */
export async function runnerSecurity(flags: {
  join?: string;
  "join-file"?: string;
  tls?: boolean;
  "tls-ca"?: string;
  "secret-file"?: string;
}): Promise<RunnerSecurity> {
  // The token carries the secret: jobs must not inherit it.
  const envToken = Deno.env.get("VICO_JOIN");
  unsetInheritedVariables("VICO_JOIN");
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
export async function jobUser(user: string | undefined, allowRoot: boolean): Promise<RunAs | undefined> {
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
