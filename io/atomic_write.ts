/**
 * The one way vico replaces a small file so that a crash leaves either the
 * old one or the new one, whole: write a temporary file beside it, fsync
 * it, rename it over the name (a link at either name is replaced, not
 * followed).
 *
 * @module
 */

import { writeAll } from "./write_all.ts";

/** Options for {@linkcode writeFileAtomic}. */
export interface AtomicWriteOptions {
  /** Mode of a new file. @default {0o666 less the umask} */
  mode?: number;
  /** The temporary file's path (it is replaced if it is there). @default {`${path}.tmp`} */
  tmp?: string;
}

/**
 * Replaces `path` with `data`: written to a temporary file, fsynced, then
 * renamed over `path`; durable when this resolves (but the directory entry
 * itself, which is not synced).
 *
 * @example
 * ```ts ignore
 * import { writeFileAtomic } from "./atomic_write.ts";
 * await writeFileAtomic("state/id", "runner-1\n", { mode: 0o600 });
 * ```
 */
export async function writeFileAtomic(
  path: string,
  data: string | Uint8Array,
  options: AtomicWriteOptions = {},
): Promise<void> {
  const tmp = options.tmp ?? `${path}.tmp`;
  // A leftover is removed, and the file made anew (O_EXCL): whatever is at
  // the temporary name, a link included, is replaced, never written through.
  await Deno.remove(tmp).catch((err) => {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  });
  const file = await Deno.open(tmp, {
    write: true,
    createNew: true,
    ...(options.mode === undefined ? {} : { mode: options.mode }),
  });
  try {
    await writeAll(file, typeof data === "string" ? new TextEncoder().encode(data) : data);
    await file.sync();
  } finally {
    file.close();
  }
  await Deno.rename(tmp, path);
}
