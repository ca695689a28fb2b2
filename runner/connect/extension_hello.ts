/**
 * The runner's side of the vico extension's opening exchange, for both
 * protocols: the hello, mutual authentication when the runner has a secret,
 * the held jobs, and the manager's answer (see `protocol/vico_extension.ts`
 * and docs/protocol.md).
 *
 * A runner with a secret never falls back: a manager that does not speak
 * the extension, or does not prove it knows the secret, is refused before
 * anything about a job is sent.
 *
 * @module
 */

import { newNonce, type SharedSecret } from "../../protocol/auth.ts";
import type { BufferedReader } from "../../protocol/buffered_reader.ts";
import { ProtocolError } from "../../core/errors.ts";
import {
  EXTENSION_PREFIX,
  formatClientHello,
  formatClientProof,
  isAuthRefusal,
  parseServerHello,
  type ServerHello,
} from "../../protocol/vico_extension.ts";
import type { Transport } from "../../transport/transport.ts";

/** What the runner says. */
export interface HelloOptions {
  /** The protocol that follows. */
  proto: "text" | "binary";
  /** Stable identity (persistent runners). */
  id?: string;
  /** Features asked for. */
  want?: readonly string[];
  /** Held-job lines to announce. */
  holds?: readonly string[];
  /** Authenticate with this secret (and require the manager to). */
  secret?: SharedSecret;
  /** The manager's address, for messages. */
  manager: string;
}

/** How the exchange went. */
export type HelloResult =
  | { readonly kind: "ok"; readonly answer: Extract<ServerHello, { kind: "ok" }> }
  /** The manager only knows the drafts (it closed, or answered in a draft's words). */
  | { readonly kind: "noExtension" }
  /** The manager answered `VICO/1 no` (`auth`: because this runner did not authenticate). */
  | { readonly kind: "refused"; readonly reason: string; readonly auth: boolean }
  /** The manager could not be trusted: it did not prove it knows the secret. Nothing was sent. */
  | { readonly kind: "untrusted"; readonly reason: string }
  /** With a secret: the manager closed the connection without a word (its run may be over). */
  | { readonly kind: "closed"; readonly reason: string }
  /** The connection failed. */
  | { readonly kind: "failed"; readonly reason: string };

const encoder = new TextEncoder();

function lines(...list: string[]): Uint8Array {
  return encoder.encode(list.map((l) => l + "\n").join(""));
}

/** {@linkcode readReply}: the manager closed (or reset) the connection without a word. */
const CLOSED = Symbol("closed");

/**
 * Reads the manager's next extension line: {@linkcode CLOSED} when it closed
 * without a word, `undefined` when it answered in another protocol's words.
 */
async function readReply(reader: BufferedReader, manager: string): Promise<string | undefined | typeof CLOSED> {
  let first: number | null;
  try {
    first = await reader.peekU8();
  } catch {
    return CLOSED;
  }
  if (first === null) return CLOSED;
  if (first === 0x15 || first === 0x16) {
    throw new ProtocolError(
      `The manager at ${manager} speaks TLS; start the runner with --join TOKEN, --tls-ca FILE or --tls`,
    );
  }
  let line: string | null;
  try {
    line = await reader.readLine();
  } catch (err) {
    if (err instanceof ProtocolError) throw err;
    return undefined;
  }
  if (line === null || !line.startsWith(EXTENSION_PREFIX)) return undefined;
  return line;
}

/**
 * Says hello and, with a secret, authenticates both ways.
 *
 * @example
 * ```ts ignore
 * const result = await sayHello(transport, reader, { proto: "text", want: ["pulse"], secret, manager: "head:7707" });
 * if (result.kind === "untrusted") throw new Error(result.reason);
 * ```
 */
export async function sayHello(
  transport: Transport,
  reader: BufferedReader,
  options: HelloOptions,
): Promise<HelloResult> {
  const holds = options.holds ?? [];
  const secret = options.secret;
  const hello = formatClientHello({
    proto: options.proto,
    id: options.id,
    want: options.want ?? [],
    holds: holds.length,
    nonce: secret === undefined ? undefined : newNonce(),
  });
  try {
    if (secret === undefined) {
      await transport.write(lines(hello, ...holds));
      const reply = await readReply(reader, options.manager);
      if (reply === undefined || reply === CLOSED) return { kind: "noExtension" };
      const answer = parseServerHello(reply);
      if (answer.kind === "no") return { kind: "refused", reason: answer.reason, auth: isAuthRefusal(answer.reason) };
      if (answer.kind === "auth") {
        return {
          kind: "refused",
          auth: true,
          reason:
            `The manager at ${options.manager} requires authentication; start the runner with --join TOKEN or --secret-file FILE`,
        };
      }
      return { kind: "ok", answer };
    }
    await transport.write(lines(hello));
    const challenge = await readReply(reader, options.manager);
    if (challenge === CLOSED) {
      return {
        kind: "closed",
        reason: `The manager at ${options.manager} closed the connection before authenticating`,
      };
    }
    if (challenge === undefined) {
      return {
        kind: "untrusted",
        reason: `The manager at ${options.manager} does not speak the vico extension, so it cannot authenticate; ` +
          `refusing it (this runner has a secret and never falls back)`,
      };
    }
    const auth = parseServerHello(challenge);
    if (auth.kind === "no") return { kind: "refused", reason: auth.reason, auth: isAuthRefusal(auth.reason) };
    if (auth.kind === "ok") {
      return {
        kind: "untrusted",
        reason: `The manager at ${options.manager} did not authenticate itself (it has no secret); refusing it`,
      };
    }
    if (!(await secret.verify("manager", hello, auth.nonce, auth.proof))) {
      return {
        kind: "untrusted",
        reason: `The manager at ${options.manager} failed to prove it knows the secret; refusing it, nothing was sent`,
      };
    }
    await transport.write(lines(formatClientProof(await secret.prove("runner", hello, auth.nonce)), ...holds));
    const reply = await readReply(reader, options.manager);
    if (reply === CLOSED || reply === undefined) {
      return { kind: "closed", reason: `The manager at ${options.manager} closed the connection after authentication` };
    }
    const answer = parseServerHello(reply);
    if (answer.kind === "no") return { kind: "refused", reason: answer.reason, auth: isAuthRefusal(answer.reason) };
    if (answer.kind === "auth") throw new ProtocolError("The manager sent a second auth line", reply);
    return { kind: "ok", answer };
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    // The manager hung up under us (its run may be over): as a close without a word.
    const hungUp = err instanceof Deno.errors.BrokenPipe || err instanceof Deno.errors.ConnectionReset ||
      err instanceof Deno.errors.UnexpectedEof || err instanceof Deno.errors.NotConnected;
    if (hungUp && secret !== undefined) return { kind: "closed", reason };
    if (hungUp) return { kind: "noExtension" };
    return { kind: "failed", reason };
  }
}
