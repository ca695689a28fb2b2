/**
 * The systemd service notification protocol (sd_notify(3)) for a runner
 * started as a `Type=notify` service: `READY=1` once it has joined its
 * manager, a one-line `STATUS=`, `WATCHDOG=1` keep-alives and `STOPPING=1`.
 *
 * systemd passes a unix datagram socket in `NOTIFY_SOCKET` (a path, or an
 * abstract name when it starts with `@`) and, with `WatchdogSec=`, the
 * interval in `WATCHDOG_USEC`. Without `NOTIFY_SOCKET` nothing is sent.
 *
 * How a datagram is sent: Deno 2.9 has unix datagram sockets only behind
 * `--unstable-net` (`Deno.listenDatagram({ transport: "unixpacket" })`, bound
 * to a path of its own), and none for abstract names (denoland/deno#31660).
 * When that API is present and the socket is a path, the runner sends
 * itself; otherwise it runs `systemd-notify --pid=<runner pid> VAR=VALUE...`.
 * systemd-notify's message carries the runner's pid only when it may forge
 * credentials (root); otherwise it carries its own pid, which systemd accepts
 * only with `NotifyAccess=all` in the unit, and attributes correctly only
 * because systemd-notify waits (a barrier) until systemd has processed the
 * message while it is still alive in the unit's cgroup. Hence the unit sets
 * `NotifyAccess=all`; the runner's jobs run as the same user, so the access
 * gives them nothing they could not do anyway (they could kill the runner).
 *
 * @module
 */

import { join } from "node:path";
import { logger } from "../../util/log.ts";
import type { RunnerActivity } from "../runner.ts";
import { processOutput } from "../../util/command.ts";
import { unsetInheritedVariables } from "../exec/process_runner.ts";

const log = logger("runner");

/** Sends one notification message (newline-separated `VAR=VALUE` lines). */
export type NotifySend = (message: string) => Promise<void>;

/** Options for {@linkcode ServiceNotifier}. */
export interface ServiceNotifierOptions {
  /** Watchdog interval from `WATCHDOG_USEC`, in microseconds; keep-alives go at half of it. */
  watchdogUsec?: number;
  /** Least time between two `STATUS=` updates, in milliseconds. @default {1000} */
  statusIntervalMs?: number;
  /** Releases what `send` holds (a socket, a directory). */
  close?: () => Promise<void>;
}

/** One queued message: at most one of each kind waits at a time. */
interface Queued {
  kind: "ready" | "status" | "stopping" | "watchdog";
  message: string;
}

/** Longest STATUS= text sent; the rest is cut. */
const MAX_STATUS_CHARS = 240;

/**
 * Tells a service manager how the service is doing. Messages go out one at a
 * time in order; while one is being sent, a newer status replaces a waiting
 * one and a waiting keep-alive absorbs the next, so at most four wait.
 *
 * @example
 * ```ts ignore
 * const notifier = await ServiceNotifier.fromEnv();
 * notifier?.ready("connected to head:7707");
 * notifier?.status("3 job(s) running, 10 done");
 * notifier?.stopping();
 * await notifier?.close();
 * ```
 */
export class ServiceNotifier {
  readonly #send: NotifySend;
  readonly #options: ServiceNotifierOptions;
  readonly #statusIntervalMs: number;
  readonly #queue: Queued[] = [];
  #sending: Promise<void> | undefined;
  #ready = false;
  #stopping = false;
  #closed = false;
  #failed = false;
  /** The last status sent or queued, and when it was queued. */
  #lastStatus = "";
  #lastStatusAt = -Infinity;
  /** A status held back by the rate limit, and the timer that sends it. */
  #heldStatus: string | undefined;
  #statusTimer: ReturnType<typeof setTimeout> | undefined;
  #watchdogTimer: ReturnType<typeof setInterval> | undefined;
  /** How often `WATCHDOG=1` goes out, in milliseconds (undefined: no watchdog). */
  readonly watchdogMs: number | undefined;

  /**
   * @param send Delivers one message.
   * @param options Watchdog interval, status rate, clean-up.
   */
  constructor(send: NotifySend, options: ServiceNotifierOptions = {}) {
    this.#send = send;
    this.#options = options;
    this.#statusIntervalMs = options.statusIntervalMs ?? 1000;
    const usec = options.watchdogUsec;
    if (usec !== undefined && usec > 0) {
      // A timer fires only while the event loop turns: a stuck runner stops
      // the keep-alives and systemd restarts it.
      const everyMs = Math.max(1, Math.floor(usec / 2000));
      this.watchdogMs = everyMs;
      this.#watchdogTimer = setInterval(() => this.#enqueue({ kind: "watchdog", message: "WATCHDOG=1" }), everyMs);
      Deno.unrefTimer(this.#watchdogTimer);
    }
  }

  /**
   * A notifier for the service manager named by `NOTIFY_SOCKET`, or
   * undefined when there is none (not a `Type=notify` service). Removes
   * `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` from the environment
   * so that jobs do not inherit them (as `sd_notify(unset_environment=1)`).
   */
  static async fromEnv(): Promise<ServiceNotifier | undefined> {
    const socket = Deno.env.get("NOTIFY_SOCKET");
    const watchdogUsecText = Deno.env.get("WATCHDOG_USEC");
    const watchdogPid = Deno.env.get("WATCHDOG_PID");
    unsetInheritedVariables("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID");
    if (socket === undefined || socket === "") return undefined;
    let watchdogUsec: number | undefined;
    if (watchdogUsecText !== undefined && (watchdogPid === undefined || Number(watchdogPid) === Deno.pid)) {
      const usec = Number(watchdogUsecText);
      if (Number.isSafeInteger(usec) && usec > 0) watchdogUsec = usec;
      else {log.warn("Ignoring WATCHDOG_USEC={value}: not a positive number of microseconds", {
          value: watchdogUsecText,
        });}
    }
    const native = socket.startsWith("@") ? undefined : await datagramSender(socket);
    const sender = native ?? { send: systemdNotifySender(socket, Deno.pid) };
    log.debug("Service notifications go to {socket} via {how}{watchdog}", {
      socket,
      how: native ? "a datagram socket" : "systemd-notify",
      watchdog: watchdogUsec === undefined ? "" : `, keep-alive every ${watchdogUsec / 2000} ms`,
    });
    return new ServiceNotifier(sender.send, { watchdogUsec, close: native?.close });
  }

  /** `READY=1` with a status, the first time; later calls only update the status. */
  ready(status: string): void {
    if (this.#ready || this.#stopping) return this.status(status);
    this.#ready = true;
    const text = oneLine(status);
    this.#noteStatus(text);
    this.#enqueue({ kind: "ready", message: `READY=1\nSTATUS=${text}` });
  }

  /** `STATUS=` when it changed, at most once per status interval (the latest wins). */
  status(status: string): void {
    const text = oneLine(this.#stopping ? `Stopping; ${status}` : status);
    if (text === (this.#heldStatus ?? this.#lastStatus)) return;
    const wait = this.#lastStatusAt + this.#statusIntervalMs - performance.now();
    if (wait <= 0) {
      this.#noteStatus(text);
      this.#enqueue({ kind: "status", message: `STATUS=${text}` });
      return;
    }
    this.#heldStatus = text;
    if (this.#statusTimer === undefined) {
      this.#statusTimer = setTimeout(() => {
        this.#statusTimer = undefined;
        const held = this.#heldStatus;
        this.#heldStatus = undefined;
        if (held !== undefined && held !== this.#lastStatus) {
          this.#noteStatus(held);
          this.#enqueue({ kind: "status", message: `STATUS=${held}` });
        }
      }, wait);
      Deno.unrefTimer(this.#statusTimer);
    }
  }

  /** `STOPPING=1` (once), with the last status prefixed "Stopping". */
  stopping(): void {
    if (this.#stopping) return;
    this.#stopping = true;
    const text = oneLine(`Stopping; ${this.#heldStatus ?? this.#lastStatus}`);
    this.#noteStatus(text);
    this.#enqueue({ kind: "stopping", message: `STOPPING=1\nSTATUS=${text}` });
  }

  /**
   * Stops the keep-alives, sends what is waiting (for up to `timeoutMs`) and
   * releases the socket.
   */
  async close(timeoutMs = 5000): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#watchdogTimer);
    clearTimeout(this.#statusTimer);
    if (this.#heldStatus !== undefined && this.#heldStatus !== this.#lastStatus) {
      this.#queue.push({ kind: "status", message: `STATUS=${this.#heldStatus}` });
      this.#pump();
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      this.#drained(),
      new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs))),
    ]);
    clearTimeout(timer);
    await this.#options.close?.().catch(() => {});
  }

  #noteStatus(text: string): void {
    this.#lastStatus = text;
    this.#lastStatusAt = performance.now();
    this.#heldStatus = undefined;
  }

  #enqueue(item: Queued): void {
    if (this.#closed || this.#failed) return;
    const waiting = this.#queue.find((q) => q.kind === item.kind);
    if (waiting !== undefined && (item.kind === "status" || item.kind === "watchdog")) {
      waiting.message = item.message;
      return;
    }
    this.#queue.push(item);
    this.#pump();
  }

  #pump(): void {
    if (this.#sending !== undefined) return;
    this.#sending = (async () => {
      while (this.#queue.length > 0 && !this.#failed) {
        const item = this.#queue.shift()!;
        try {
          await this.#send(item.message);
        } catch (err) {
          if (err instanceof Deno.errors.NotFound) {
            // No systemd-notify here: nothing more can be sent.
            this.#failed = true;
            log.error("Cannot notify the service manager (NOTIFY_SOCKET is set): {err}", {
              err: (err as Error).message,
            });
          } else {
            log.warn("Could not notify the service manager ({kind}): {err}", {
              kind: item.kind,
              err: (err as Error).message,
            });
          }
        }
      }
      this.#sending = undefined;
    })();
  }

  async #drained(): Promise<void> {
    while (this.#sending !== undefined) await this.#sending;
  }
}

/**
 * A runner's status line: "2 job(s) running, 10 done; manager head:7707",
 * and why the manager cannot be reached while it cannot.
 */
export function runnerStatus(activity: RunnerActivity, manager: string): string {
  const where = activity.connected
    ? `manager ${manager}`
    : activity.problem === undefined
    ? `not connected to manager ${manager}`
    : `waiting for manager ${manager}: ${activity.problem}`;
  return `${activity.running} job(s) running, ${activity.done} done; ${where}`;
}

/** Makes `text` one line of at most {@linkcode MAX_STATUS_CHARS} characters. */
function oneLine(text: string): string {
  const line = text.replace(/[\r\n]+/g, " ").trim();
  return line.length > MAX_STATUS_CHARS ? line.slice(0, MAX_STATUS_CHARS - 1) + "…" : line;
}

/** The unstable Deno API for unix datagram sockets (present with `--unstable-net`). */
type ListenDatagram = (options: { transport: "unixpacket"; path: string }) => {
  send(data: Uint8Array, addr: { transport: "unixpacket"; path: string }): Promise<number>;
  close(): void;
};

/**
 * Sends datagrams itself from a socket bound in a fresh temporary directory,
 * when Deno offers unix datagram sockets (`--unstable-net`); undefined when
 * it does not, or the socket cannot be made.
 */
async function datagramSender(socket: string): Promise<{ send: NotifySend; close: () => Promise<void> } | undefined> {
  const listenDatagram = (Deno as unknown as { listenDatagram?: ListenDatagram }).listenDatagram;
  if (typeof listenDatagram !== "function") return undefined;
  let dir: string | undefined;
  try {
    dir = await Deno.makeTempDir({ prefix: "vico-notify-" });
    const conn = listenDatagram({ transport: "unixpacket", path: join(dir, "s") });
    const encoder = new TextEncoder();
    const tempDir = dir;
    return {
      send: async (message) => {
        await conn.send(encoder.encode(message), { transport: "unixpacket", path: socket });
      },
      close: async () => {
        conn.close();
        await Deno.remove(tempDir, { recursive: true }).catch(() => {});
      },
    };
  } catch (err) {
    log.debug("No datagram socket for notifications ({err}); using systemd-notify", { err: (err as Error).message });
    if (dir !== undefined) await Deno.remove(dir, { recursive: true }).catch(() => {});
    return undefined;
  }
}

/**
 * Sends through `systemd-notify --pid=PID VAR=VALUE...` (which waits until
 * the service manager has processed the message).
 *
 * @throws {Deno.errors.NotFound} when systemd-notify is not installed.
 */
export function systemdNotifySender(socket: string, pid: number, program = "systemd-notify"): NotifySend {
  return async (message) => {
    const out = await processOutput(program, {
      args: [`--pid=${pid}`, ...message.split("\n")],
      env: { NOTIFY_SOCKET: socket },
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    });
    if (!out.success) {
      const why = new TextDecoder().decode(out.stderr).trim() || `exit status ${out.code}`;
      throw new Error(`${program}: ${why}`);
    }
  };
}
