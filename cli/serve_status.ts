/**
 * `--status-port`: the manager's read-only status page, started before the
 * run so that a port in use stops the command before anything is written.
 *
 * @module
 */

import type { Logger } from "@logtape/logtape";
import type { Manager } from "../manager/manager.ts";
import { StatusServer } from "../manager/observe/status_server.ts";
import { CommandFailure, ExitCode } from "./exit_code.ts";
import { isLoopback } from "./flags.ts";

/**
 * Serves the status page of the manager `manager()` returns once it has
 * started (it answers 500 until then).
 *
 * @throws {CommandFailure} `CANNOT_START` when the port cannot be bound.
 */
export function serveStatus(
  where: { hostname: string; port: number; resultsDir: string },
  manager: () => Manager,
  log: Logger,
): StatusServer {
  let server: StatusServer;
  try {
    server = StatusServer.start({
      hostname: where.hostname,
      port: where.port,
      snapshot: (limits) => manager().status.snapshot(limits),
      finished: () => manager().status.counts().finished,
      settledByHost: () => manager().settledByHost(),
      resultsDir: where.resultsDir,
      // Before the manager has started there is no store yet: read to the end.
      journalEnd: () => (manager() as Manager | undefined)?.journalLength(),
    });
  } catch (err) {
    const why = err instanceof Deno.errors.AddrInUse ? "the port is in use" : (err as Error).message;
    throw new CommandFailure(
      ExitCode.CANNOT_START,
      `cannot serve the status page on ${where.hostname}:${where.port}: ${why}`,
    );
  }
  const { hostname: sh, port: sp } = server.address;
  log.info("Status page on http://{host}:{port}/ (read-only, no authentication; also /status, /metrics, /timeline)", {
    host: sh.includes(":") ? `[${sh}]` : sh,
    port: sp,
  });
  if (!isLoopback(where.hostname)) {
    log.warn(
      "The status page on {host} has no authentication: whoever reaches it sees command lines and host names",
      { host: where.hostname },
    );
  }
  return server;
}
