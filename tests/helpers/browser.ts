/**
 * Headless Chromium for tests, driven by playwright-core (npm) in this Deno
 * process. Uses the system's Chromium (`/usr/bin/chromium`, or
 * `VICO_CHROMIUM`); playwright's own browser downloads are never used.
 *
 * @module
 */

import type { BrowserContext } from "playwright-core";

/** The Chromium binary the browser tests use. */
export const CHROMIUM = Deno.env.get("VICO_CHROMIUM") ?? "/usr/bin/chromium";

/** Why browser tests cannot run here, or `undefined` when they can. */
export function browserUnavailable(): string | undefined {
  try {
    if (!Deno.statSync(CHROMIUM).isFile) return `${CHROMIUM} is not a file`;
  } catch {
    return `no Chromium at ${CHROMIUM} (install Debian's chromium, or set VICO_CHROMIUM)`;
  }
  // playwright-core calls os.homedir() as it loads.
  if (Deno.permissions.querySync({ name: "sys", kind: "homedir" }).state !== "granted") {
    return 'playwright-core needs sys "homedir": add it to the "test" permissions in deno.json';
  }
  return undefined;
}

/** A fresh headless Chromium with its own profile, removed at disposal. */
export async function launchChromium(): Promise<BrowserContext & AsyncDisposable> {
  // playwright-core's bundled is-wsl probes /proc/sys/fs/binfmt_misc at load,
  // which Deno allows only with --allow-all; this variable (its own test
  // switch) skips the probe. It only matters for opening URLs on WSL.
  Deno.env.set("__IS_WSL_TEST__", "1");
  const { chromium } = await import("playwright-core");
  const profile = await Deno.makeTempDir({ prefix: "vico-chromium-" });
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1280, height: 900 },
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  return Object.assign(context, {
    async [Symbol.asyncDispose]() {
      await context.close().catch(() => {});
      await Deno.remove(profile, { recursive: true }).catch(() => {});
    },
  });
}
