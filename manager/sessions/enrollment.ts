/**
 * Zero-config enrollment: on first start on a network address with no TLS or
 * secret configured, the manager makes itself a key pair, a self-signed
 * certificate and a shared secret in its state directory, and prints one join
 * token. Later starts load the same files, so tokens already handed out keep
 * working. The certificate is made with the `@peculiar/x509` npm library over
 * WebCrypto (ECDSA P-256, SHA-256); `openssl` is not needed.
 *
 * State directory layout (directory mode 0700, files 0600 but the certificate):
 *
 * ```
 * manager.key   PKCS#8 private key, PEM
 * manager.crt   self-signed certificate, PEM
 * secret        64 hex digits
 * join-token    the last token printed (vico1_…)
 * enroll.lock   held (flock) while a manager checks for or makes the three above
 * ```
 *
 * @module
 */

import { join } from "node:path";
import { SharedSecret } from "../../protocol/auth.ts";
import { VicoError } from "../../core/errors.ts";
import { formatJoinToken } from "../../protocol/join_token.ts";
import { certificateFingerprint, derToPem, isIpAddress, pemToDer, type TlsIdentity } from "../../transport/tls.ts";
import { writeFileAtomic } from "../../io/atomic_write.ts";
import { newSecretText, readPrivateFile, readSecretBytes, writePrivateFile } from "../../transport/secret_file.ts";

/** Held while a manager checks for, or makes, the identity in a state directory. */
const ENROLL_LOCK = "enroll.lock";

/** What enrollment yields: how to serve, and what a join token carries. */
export interface Enrollment {
  /** The certificate and key to serve TLS with. */
  readonly tls: TlsIdentity;
  /** The shared secret. */
  readonly secret: SharedSecret;
  /** SHA-256 of the certificate, lowercase hex. */
  readonly fingerprint: string;
  /** The secret as the token carries it. */
  readonly secretText: string;
  /** The state directory. */
  readonly stateDir: string;
  /** Whether the key, certificate and secret were made by this call. */
  readonly created: boolean;
}

/** Options for {@linkcode enroll}. */
export interface EnrollOptions {
  /** The state directory (made with mode 0700 if missing). */
  stateDir: string;
  /** Names the certificate carries (informational: runners pin the fingerprint). */
  hostnames?: readonly string[];
}

const ALG = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;
const TEN_YEARS_MS = 10 * 365 * 86_400_000;

/** Makes a new ECDSA P-256 key and a self-signed server certificate for it. */
export async function makeSelfSignedIdentity(hostnames: readonly string[]): Promise<TlsIdentity> {
  // Loaded only when a certificate is made: it is most of the manager's start-up otherwise.
  const x509 = await import("@peculiar/x509");
  x509.cryptoProvider.set(crypto);
  const keys = await crypto.subtle.generateKey(ALG, true, ["sign", "verify"]);
  const names = [...new Set(["localhost", ...hostnames])];
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: Array.from(crypto.getRandomValues(new Uint8Array(8)), (b) => b.toString(16).padStart(2, "0"))
      .join("").replace(/^[89a-f]/, "1"),
    name: "CN=vico manager",
    notBefore: new Date(Date.now() - 3_600_000),
    notAfter: new Date(Date.now() + TEN_YEARS_MS),
    signingAlgorithm: ALG,
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension(["1.3.6.1.5.5.7.3.1"]),
      new x509.SubjectAlternativeNameExtension(
        names.map((n) => (isIpAddress(n) ? { type: "ip" as const, value: n } : { type: "dns" as const, value: n })),
      ),
    ],
  });
  const pkcs8 = new Uint8Array(await crypto.subtle.exportKey("pkcs8", keys.privateKey));
  return { certPem: cert.toString("pem") + "\n", keyPem: derToPem(pkcs8, "PRIVATE KEY") };
}

async function exists(path: string): Promise<boolean> {
  return await Deno.lstat(path).then(() => true, () => false);
}

/** Replaces `path` with `text` atomically (temporary file, fsync, rename), mode 0600. */
async function replacePrivateFile(path: string, text: string): Promise<void> {
  await writeFileAtomic(path, text, { mode: 0o600, tmp: `${path}.tmp-${crypto.randomUUID()}` });
}

/**
 * Loads the manager's enrollment from `stateDir`, making key, certificate and
 * secret on first use.
 *
 * @example
 * ```ts ignore
 * const enrollment = await enroll({ stateDir: "/var/lib/vico-manager", hostnames: ["head.example"] });
 * const { token } = await writeJoinToken(enrollment, "head.example:7707");
 * console.log(token); // for `runner --join-file FILE` or VICO_JOIN, never `--join` (arguments are public)
 * ```
 * @throws {VicoError} `UNSAFE` if the state directory or its key or secret is
 *   open to other users; `USAGE` if only some of the files exist.
 */
export async function enroll(options: EnrollOptions): Promise<Enrollment> {
  const dir = options.stateDir;
  await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  const info = await Deno.stat(dir);
  if (info.mode !== null && (info.mode & 0o077) !== 0) {
    throw new VicoError(
      "UNSAFE",
      `The state directory ${dir} is open to other users (mode ${(info.mode & 0o777).toString(8)}); ` +
        `make it private with: chmod 700 ${dir}`,
    );
  }
  const keyPath = join(dir, "manager.key");
  const certPath = join(dir, "manager.crt");
  const secretPath = join(dir, "secret");
  // Managers starting together on one directory take turns: the first makes
  // the identity, the others wait for it and load it (without the lock, they
  // saw a partial set and failed, or were told to remove it).
  using lock = await Deno.open(join(dir, ENROLL_LOCK), { read: true, write: true, create: true, mode: 0o600 });
  await lock.lock(true);
  const present = await Promise.all([keyPath, certPath, secretPath].map(exists));
  let created = false;
  if (present.every((p) => !p)) {
    const identity = await makeSelfSignedIdentity(options.hostnames ?? []);
    // Secret and key first, certificate last: a crash in between leaves a
    // partial set, refused below rather than silently replaced.
    await writePrivateFile(secretPath, newSecretText() + "\n");
    await writePrivateFile(keyPath, identity.keyPem);
    await writePrivateFile(certPath, identity.certPem);
    created = true;
  } else if (!present.every((p) => p)) {
    throw new VicoError(
      "USAGE",
      `The state directory ${dir} holds only some of manager.key, manager.crt and secret; ` +
        `restore them, or remove all three to enroll anew (runners will need the new join token)`,
    );
  }
  const keyPem = new TextDecoder().decode(await readPrivateFile(keyPath, "private key"));
  const certPem = await Deno.readTextFile(certPath);
  const secretBytes = await readSecretBytes(secretPath);
  const secretText = new TextDecoder().decode(secretBytes);
  const secret = await SharedSecret.from(secretBytes);
  const fingerprint = await certificateFingerprint(pemToDer(certPem));
  return { tls: { certPem, keyPem }, secret, fingerprint, secretText, stateDir: dir, created };
}

/**
 * Makes the join token for runners dialling `advertise` (`host:port`) and
 * writes it to `join-token` in the state directory (mode 0600, atomically).
 */
export async function writeJoinToken(
  enrollment: Enrollment,
  advertise: string,
): Promise<{ token: string; path: string }> {
  const token = formatJoinToken({
    manager: advertise,
    fingerprint: enrollment.fingerprint,
    secret: enrollment.secretText,
  });
  const path = join(enrollment.stateDir, "join-token");
  await replacePrivateFile(path, token + "\n");
  return { token, path };
}
