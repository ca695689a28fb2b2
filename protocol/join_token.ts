/**
 * Join tokens: everything a runner needs to join a manager securely, in one
 * string to paste: the manager's address, the SHA-256 fingerprint of its
 * certificate (the runner pins it: no CA needed) and the shared secret.
 *
 * ```
 * vico1_<base64url of {"m":"<host>:<port>","f":"<64 hex digits>","s":"<secret>"}>
 * ```
 *
 * A token is a credential: whoever holds it can run as a runner of that
 * manager. Pure: no I/O.
 *
 * @module
 */

import { isHex64 } from "./auth.ts";
import { VicoError } from "../core/errors.ts";

/** What a join token carries. */
export interface JoinToken {
  /** The manager's address, `host:port` (`[v6]:port` for IPv6). */
  readonly manager: string;
  /** SHA-256 of the manager certificate's DER bytes, lowercase hex. */
  readonly fingerprint: string;
  /** The shared secret (text). */
  readonly secret: string;
}

/** Prefix of every join token (and its version). */
export const JOIN_TOKEN_PREFIX = "vico1_";

function toBase64Url(text: string): string {
  const bytes = new TextEncoder().encode(text);
  let bin = "";
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function fromBase64Url(text: string): string {
  const bin = atob(text.replace(/-/g, "+").replace(/_/g, "/"));
  return new TextDecoder("utf-8", { fatal: true }).decode(Uint8Array.from(bin, (c) => c.charCodeAt(0)));
}

/**
 * Formats a join token.
 *
 * @example
 * ```ts
 * import { formatJoinToken, parseJoinToken } from "./join_token.ts";
 * const token = formatJoinToken({ manager: "head:7707", fingerprint: "ab".repeat(32), secret: "s3cret-s3cret-s3cret" });
 * console.assert(parseJoinToken(token).manager === "head:7707");
 * ```
 */
export function formatJoinToken(token: JoinToken): string {
  return JOIN_TOKEN_PREFIX + toBase64Url(JSON.stringify({ m: token.manager, f: token.fingerprint, s: token.secret }));
}

/**
 * Parses a join token (surrounding whitespace is ignored).
 *
 * @throws {VicoError} `USAGE` if it is not a well-formed token.
 */
export function parseJoinToken(text: string): JoinToken {
  const trimmed = text.trim();
  const bad = (why: string) =>
    new VicoError("USAGE", `Not a vico join token (${why}); it starts with ${JOIN_TOKEN_PREFIX} and is one line`);
  if (!trimmed.startsWith(JOIN_TOKEN_PREFIX)) throw bad(`no ${JOIN_TOKEN_PREFIX} prefix`);
  const body = trimmed.slice(JOIN_TOKEN_PREFIX.length);
  if (!/^[A-Za-z0-9_-]+$/.test(body)) throw bad("characters outside base64url");
  let fields: unknown;
  try {
    fields = JSON.parse(fromBase64Url(body));
  } catch {
    throw bad("it does not decode; was it cut short?");
  }
  const { m, f, s } = (fields ?? {}) as Record<string, unknown>;
  if (typeof m !== "string" || !/^.+:[0-9]{1,5}$/.test(m)) throw bad("no manager address");
  if (typeof f !== "string" || !isHex64(f)) throw bad("no certificate fingerprint");
  if (typeof s !== "string" || s.length < 16) throw bad("no secret");
  return { manager: m, fingerprint: f, secret: s };
}
