/**
 * Secret files: the shared secret of a vico deployment, one line of text.
 * Like ssh with its keys, vico refuses a secret file that other users could
 * read, and makes new ones readable by their owner only.
 *
 * @module
 */

import { MIN_SECRET_BYTES, SharedSecret, toHex } from "../protocol/auth.ts";
import { VicoError } from "../core/errors.ts";
import { writeAll } from "../io/write_all.ts";

/**
 * Reads a file that holds a credential (a secret, a join token), refusing
 * it if group or others may read or write it.
 *
 * @throws {VicoError} `UNSAFE` if it is open to other users; `USAGE` if it cannot be read.
 */
export async function readPrivateFile(path: string, what: string): Promise<Uint8Array> {
  let info: Deno.FileInfo;
  let bytes: Uint8Array;
  try {
    info = await Deno.stat(path);
    bytes = await Deno.readFile(path);
  } catch (err) {
    throw new VicoError("USAGE", `Cannot read the ${what} ${path}: ${(err as Error).message}`);
  }
  if (info.mode !== null && (info.mode & 0o077) !== 0) {
    const mode = (info.mode & 0o777).toString(8).padStart(3, "0");
    throw new VicoError(
      "UNSAFE",
      `The ${what} ${path} is open to other users (mode ${mode}); make it private with: chmod 600 ${path}`,
    );
  }
  return bytes;
}

/**
 * Reads a secret file as a {@linkcode SharedSecret}.
 *
 * @throws {VicoError} As {@linkcode readSecretBytes}.
 */
export async function readSecretFile(path: string): Promise<SharedSecret> {
  return await SharedSecret.from(await readSecretBytes(path));
}

/**
 * Reads a secret file: its bytes without trailing whitespace.
 *
 * @throws {VicoError} `UNSAFE` if group or others may read or write it, or it is
 *   shorter than {@linkcode MIN_SECRET_BYTES}; `USAGE` if it cannot be read.
 */
export async function readSecretBytes(path: string): Promise<Uint8Array> {
  const bytes = await readPrivateFile(path, "secret file");
  let end = bytes.length;
  while (end > 0 && (bytes[end - 1] === 0x0a || bytes[end - 1] === 0x0d || bytes[end - 1] === 0x20)) end--;
  if (end < MIN_SECRET_BYTES) {
    throw new VicoError(
      "UNSAFE",
      `The secret in ${path} is ${end} bytes; use at least ${MIN_SECRET_BYTES} random ones (for example: ` +
        `head -c 32 /dev/urandom | base64 > ${path})`,
    );
  }
  return bytes.subarray(0, end);
}

/** A new random secret as text: 32 random bytes in hex (64 characters). */
export function newSecretText(): string {
  return toHex(crypto.getRandomValues(new Uint8Array(32)));
}

/**
 * Writes `text` to a new file readable by its owner only (mode 0600),
 * durably, failing if the file exists.
 */
export async function writePrivateFile(path: string, text: string): Promise<void> {
  const file = await Deno.open(path, { write: true, createNew: true, mode: 0o600 });
  try {
    await writeAll(file, new TextEncoder().encode(text));
    await file.syncData();
  } finally {
    file.close();
  }
}
