/**
 * TLS for both protocols: a listener for the manager, and connectors for
 * runners that trust either CA certificates (a private CA, or the system
 * store) or exactly one pinned certificate named by its SHA-256 fingerprint
 * (a join token). A runner set up for TLS never falls back to plain TCP.
 *
 * @module
 */

import tls from "node:tls";
import { toHex } from "../protocol/auth.ts";
import { VicoError } from "../core/errors.ts";
import { ConnTransport, transportListener, tune } from "./conn_transport.ts";
import type { Transport, TransportListener } from "./transport.ts";

/** A manager's certificate chain and private key, PEM. */
export interface TlsIdentity {
  /** Certificate (chain), PEM. */
  readonly certPem: string;
  /** Private key, PEM (PKCS#8, SEC1 or PKCS#1). */
  readonly keyPem: string;
}

/** How a runner checks its manager's certificate. */
export type TlsTrust =
  /** CA certificates, PEM (empty: the system store); the certificate must name the host dialled. */
  | { readonly kind: "ca"; readonly caCerts: readonly string[] }
  /** Exactly this certificate, by the SHA-256 of its DER bytes (lowercase hex); any host name. */
  | { readonly kind: "pinned"; readonly fingerprint: string };

/** How long a TLS handshake may take before the connection is given up. */
export const TLS_HANDSHAKE_TIMEOUT_MS = 15_000;

/**
 * Listens with TLS; each connection's handshake is completed by {@linkcode Transport.handshake}.
 *
 * @example
 * ```ts ignore
 * const identity = { certPem: await Deno.readTextFile("manager.crt"), keyPem: await Deno.readTextFile("manager.key") };
 * for await (const transport of listenTls("0.0.0.0", 7707, identity)) await transport.handshake?.();
 * ```
 */
export function listenTls(hostname: string, port: number, identity: TlsIdentity): TransportListener {
  return transportListener(
    Deno.listenTls({ hostname, port, transport: "tcp", cert: identity.certPem, key: identity.keyPem }),
    (conn) => new ConnTransport(conn),
  );
}

/** SHA-256 of a certificate's DER bytes, lowercase hex. */
export async function certificateFingerprint(der: Uint8Array): Promise<string> {
  return toHex(new Uint8Array(await crypto.subtle.digest("SHA-256", der as Uint8Array<ArrayBuffer>)));
}

/** PEM text of DER bytes: a certificate, or (`label` "PRIVATE KEY") a PKCS#8 key. */
export function derToPem(der: Uint8Array, label = "CERTIFICATE"): string {
  let bin = "";
  for (const b of der) bin += String.fromCharCode(b);
  const lines = btoa(bin).match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join("\n")}\n-----END ${label}-----\n`;
}

/** DER bytes of the first certificate in PEM text. */
export function pemToDer(pem: string): Uint8Array {
  const m = /-----BEGIN CERTIFICATE-----([\s\S]+?)-----END CERTIFICATE-----/.exec(pem);
  if (m === null) throw new VicoError("USAGE", "No PEM certificate found");
  return Uint8Array.from(atob(m[1].replace(/\s+/g, "")), (c) => c.charCodeAt(0));
}

/** Whether `host` is an IP address (v4, or anything with a colon: v6) rather than a name. */
export function isIpAddress(host: string): boolean {
  return /^(\d{1,3}(\.\d{1,3}){3}|.*:.*)$/.test(host);
}

/**
 * Fetches the certificate a TLS server presents, without trusting it and
 * without sending a byte of application data: only the TLS handshake.
 */
export function fetchCertificate(hostname: string, port: number): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({
      host: hostname,
      port,
      rejectUnauthorized: false,
      ...(isIpAddress(hostname) ? {} : { servername: hostname }),
    });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no TLS handshake within ${TLS_HANDSHAKE_TIMEOUT_MS / 1000}s`));
    }, TLS_HANDSHAKE_TIMEOUT_MS);
    socket.once("secureConnect", () => {
      clearTimeout(timer);
      const raw = socket.getPeerCertificate(true)?.raw;
      socket.destroy();
      if (!raw || raw.length === 0) reject(new Error("the server presented no certificate"));
      else resolve(new Uint8Array(raw));
    });
    socket.once("error", (err: Error) => {
      clearTimeout(timer);
      socket.destroy();
      reject(err);
    });
  });
}

/**
 * Makes a connect function for a runner: TCP, then TLS checked against
 * `trust`, handshake completed before it returns. With a pinned
 * fingerprint, the first connection fetches the manager's certificate and
 * compares its fingerprint before anything else is sent; the certificate is
 * then the only trust anchor, for this connection and every later one.
 *
 * @example
 * ```ts ignore
 * // A join token's pin: no CA, exactly this certificate.
 * const connect = tlsConnector({ kind: "pinned", fingerprint: token.fingerprint });
 * const transport = await connect("head.example", 7707);
 * ```
 * @throws {VicoError} `AUTH_FAILED` when the certificate is not the one trusted.
 */
export function tlsConnector(trust: TlsTrust): (hostname: string, port: number) => Promise<Transport> {
  let pinnedPem: string | undefined;
  return async (hostname, port) => {
    let caCerts: string[] | undefined;
    if (trust.kind === "pinned") {
      if (pinnedPem === undefined) {
        const der = await fetchCertificate(hostname, port).catch((err) => {
          const code = (err as { code?: string }).code ?? "";
          const message = `TLS with the manager at ${hostname}:${port} failed: ${(err as Error).message}`;
          // Not reachable: as any failed connect (a runner waits or gives up).
          if (/^(ECONNREFUSED|EHOSTUNREACH|ENETUNREACH|ENOTFOUND|EAI_AGAIN|ETIMEDOUT)$/.test(code)) {
            throw new Error(message);
          }
          // Reached, but no TLS handshake: not the manager the token names.
          throw new VicoError("AUTH_FAILED", `${message} (is the manager set up for TLS?)`);
        });
        const seen = await certificateFingerprint(der);
        if (seen !== trust.fingerprint) {
          throw new VicoError(
            "AUTH_FAILED",
            `The manager at ${hostname}:${port} presented a certificate with fingerprint ${seen}, but the join ` +
              `token pins ${trust.fingerprint}: refusing it, nothing was sent`,
          );
        }
        pinnedPem = derToPem(der);
      }
      caCerts = [pinnedPem];
    } else if (trust.caCerts.length > 0) {
      caCerts = [...trust.caCerts];
    }
    const tcp = tune(await Deno.connect({ hostname, port, transport: "tcp" }));
    let conn: Deno.TlsConn;
    try {
      conn = await Deno.startTls(tcp, {
        hostname,
        caCerts,
        unsafelyDisableHostnameVerification: trust.kind === "pinned",
      });
      let timer: ReturnType<typeof setTimeout> | undefined;
      try {
        await Promise.race([
          conn.handshake(),
          new Promise((_, reject) => {
            timer = setTimeout(
              () => reject(new Error(`no TLS handshake within ${TLS_HANDSHAKE_TIMEOUT_MS / 1000}s`)),
              TLS_HANDSHAKE_TIMEOUT_MS,
            );
          }),
        ]);
      } catch (err) {
        conn.close();
        throw err;
      } finally {
        clearTimeout(timer);
      }
    } catch (err) {
      try {
        tcp.close();
      } catch {
        // Closed with the TLS connection.
      }
      const message = (err as Error).message;
      const hint = /certificate|issuer|UnknownIssuer|NotValidForName|BadSignature/i.test(message)
        ? " (its certificate is not one this runner trusts)"
        : " (is the manager set up for TLS?)";
      throw new VicoError("AUTH_FAILED", `TLS with the manager at ${hostname}:${port} failed: ${message}${hint}`);
    }
    return new ConnTransport(conn);
  };
}
