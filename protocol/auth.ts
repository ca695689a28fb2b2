/**
 * Mutual authentication with a shared secret, as the vico extension carries
 * it (see `docs/protocol.md`, "Authentication"): each side proves it knows
 * the secret with an HMAC-SHA-256 over the runner's hello (which holds the
 * runner's fresh nonce) and the manager's fresh nonce, under a label that
 * differs per side, so no proof can be replayed on another connection or
 * reflected back at its sender. The secret itself never crosses.
 *
 * ```
 * manager proof = HMAC-SHA-256(secret, "VICO/1 manager\n" + hello + "\n" + managerNonce + "\n")
 * runner proof  = HMAC-SHA-256(secret, "VICO/1 runner\n"  + hello + "\n" + managerNonce + "\n")
 * ```
 *
 * `hello` is the runner's hello line as sent, without its `\n`; nonces and
 * proofs are 64 lowercase hexadecimal digits. Pure: Web Crypto only, no I/O.
 *
 * @module
 */

/** Random bytes in a nonce. */
export const NONCE_BYTES = 32;
/** Fewest bytes a secret may have: below this an offline guess of a recorded proof gets cheap. */
export const MIN_SECRET_BYTES = 16;

const HEX64 = /^[0-9a-f]{64}$/;
const encoder = new TextEncoder();

/** Whether `text` has the shape of a nonce or a proof: 64 lowercase hex digits. */
export function isHex64(text: string): boolean {
  return HEX64.test(text);
}

/** Lowercase hexadecimal of `bytes`. */
export function toHex(bytes: Uint8Array): string {
  let out = "";
  for (const b of bytes) out += b.toString(16).padStart(2, "0");
  return out;
}

function fromHex(hex: string): Uint8Array {
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/** A fresh nonce: {@linkcode NONCE_BYTES} random bytes as hex. */
export function newNonce(): string {
  return toHex(crypto.getRandomValues(new Uint8Array(NONCE_BYTES)));
}

/** The side a proof speaks for. */
export type ProofSide = "manager" | "runner";

/** A shared secret, ready to prove and verify. */
export class SharedSecret {
  readonly #key: CryptoKey;

  private constructor(key: CryptoKey) {
    this.#key = key;
  }

  /**
   * Makes a secret from its bytes (a secret file's contents without the
   * trailing line break).
   *
   * @example
   * ```ts
   * import { newNonce, SharedSecret } from "./auth.ts";
   * const secret = await SharedSecret.from(new TextEncoder().encode("correct horse battery staple"));
   * const hello = `VICO/1 hello proto=text nonce=${newNonce()}`;
   * const nonce = newNonce();
   * const proof = await secret.prove("manager", hello, nonce);
   * console.assert(await secret.verify("manager", hello, nonce, proof));
   * console.assert(!(await secret.verify("runner", hello, nonce, proof)));
   * ```
   * @throws {RangeError} If it is shorter than {@linkcode MIN_SECRET_BYTES}.
   */
  static async from(bytes: Uint8Array): Promise<SharedSecret> {
    if (bytes.length < MIN_SECRET_BYTES) {
      throw new RangeError(`A secret needs at least ${MIN_SECRET_BYTES} bytes, this one has ${bytes.length}`);
    }
    const key = await crypto.subtle.importKey(
      "raw",
      bytes as Uint8Array<ArrayBuffer>,
      { name: "HMAC", hash: "SHA-256" },
      false,
      ["sign", "verify"],
    );
    return new SharedSecret(key);
  }

  /** The proof `side` sends for a hello and the manager's nonce (64 hex digits). */
  async prove(side: ProofSide, hello: string, managerNonce: string): Promise<string> {
    const mac = await crypto.subtle.sign("HMAC", this.#key, transcript(side, hello, managerNonce));
    return toHex(new Uint8Array(mac));
  }

  /** Whether `proof` is what `side` must send; compared in constant time. */
  async verify(side: ProofSide, hello: string, managerNonce: string, proof: string): Promise<boolean> {
    if (!isHex64(proof)) return false;
    return await crypto.subtle.verify(
      "HMAC",
      this.#key,
      fromHex(proof) as Uint8Array<ArrayBuffer>,
      transcript(side, hello, managerNonce),
    );
  }
}

function transcript(side: ProofSide, hello: string, managerNonce: string): Uint8Array<ArrayBuffer> {
  return encoder.encode(`VICO/1 ${side}\n${hello}\n${managerNonce}\n`);
}
