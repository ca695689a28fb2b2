/**
 * The status server (`manager --status-port`): a small read-only HTTP
 * server beside the runner port.
 *
 * - `GET /` — the live status page ({@linkcode renderStatusPage});
 * - `GET /status` — a {@linkcode StatusSnapshot} as JSON;
 * - `GET /metrics` — the same in the Prometheus text format;
 * - `GET /timeline` — the job intervals the page draws, read from the
 *   results journal ({@linkcode Timeline}): only the last
 *   {@linkcode DEFAULT_TIMELINE_LIMIT} jobs, and throughput in bounded
 *   buckets. The server keeps one {@linkcode JournalDigest} and reads only
 *   the journal bytes appended since the previous request.
 *
 * It changes nothing and asks for no credentials: anyone who reaches it
 * sees the command lines and host names of the run. Bind it to loopback
 * (the default) or a trusted network.
 *
 * @module
 */

import { join } from "node:path";
import { logger } from "../../util/log.ts";
import { DEFAULT_TIMELINE_LIMIT, feedJournalFrom, JournalDigest, type Timeline } from "./report.ts";
import { JOURNAL_FILE } from "../results/results_store.ts";
import { formatMetrics, type StatusSnapshot } from "./run_status.ts";
import { renderStatusPage } from "./status_page.ts";

const log = logger("status");

/** Options for {@linkcode StatusServer.start}. */
export interface StatusServerOptions {
  /** Address to listen on. @default {"127.0.0.1"} */
  hostname?: string;
  /** Port; 0 picks a free one. */
  port: number;
  /** The current snapshot, listing at most so many runners and jobs per runner. */
  snapshot: (limits?: { runners?: number; jobsPerRunner?: number }) => StatusSnapshot;
  /** Whether the run has ended (cheap; the page's last timeline is fetched after it). */
  finished?: () => boolean;
  /** Jobs settled per host in this run (for `/metrics`). */
  settledByHost?: () => Iterable<[string, number]>;
  /** The results directory whose journal `/timeline` reads. */
  resultsDir: string;
  /**
   * How far the journal holds durable records, when its writer is in this
   * process (`ResultsStore.durableLength`): `/timeline` reads no further,
   * so a batch that fails to be written and is cut back is never shown.
   * `undefined`: read to the end.
   */
  journalEnd?: () => number | undefined;
  /** Job intervals `/timeline` keeps (the most recent). @default {DEFAULT_TIMELINE_LIMIT} */
  timelineLimit?: number;
}

/** How long one `/status` snapshot serves every request for the same limits. */
const STATUS_CACHE_MS = 250;

const JSON_HEADERS = { "content-type": "application/json; charset=utf-8", "cache-control": "no-store" };
const SECURITY_HEADERS = {
  "x-content-type-options": "nosniff",
  // The page needs its own inline style and script, and fetches only from itself.
  "content-security-policy":
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self'",
  "referrer-policy": "no-referrer",
};

/** `?runners=N&jobs=M` of a `/status` request. */
function limitsOf(url: URL): { runners?: number; jobsPerRunner?: number } {
  const int = (name: string) => {
    const v = url.searchParams.get(name);
    return v !== null && /^[0-9]{1,9}$/.test(v) ? Number(v) : undefined;
  };
  return { runners: int("runners"), jobsPerRunner: int("jobs") };
}

/**
 * A running status server.
 *
 * @example
 * ```ts ignore
 * const server = StatusServer.start({ port: 0, snapshot: () => status.snapshot(), resultsDir: "results" });
 * console.log(`http://127.0.0.1:${server.address.port}/`);
 * await server.close();
 * ```
 */
export class StatusServer {
  /** Where it listens. */
  readonly address: { hostname: string; port: number };
  readonly #server: Deno.HttpServer<Deno.NetAddr>;
  readonly #options: StatusServerOptions;
  readonly #digest: JournalDigest;
  /** Where the next timeline read starts in the journal. */
  #from = { offset: 0, line: 1 };
  #reading: Promise<Timeline> | undefined;
  readonly #page: string;
  /** When `/status` was last asked for (performance.now()). */
  #lastPoll = -Infinity;
  #statusCache: { key: string; at: number; body: string } | undefined;
  /** Set by {@linkcode finish}: resolves once a page has fetched the final timeline. */
  #finalTimeline: (() => void) | undefined;
  /** A timeline was served after the run ended. */
  #finalServed = false;

  private constructor(options: StatusServerOptions) {
    this.#options = options;
    this.#digest = new JournalDigest(options.timelineLimit ?? DEFAULT_TIMELINE_LIMIT);
    this.#page = renderStatusPage();
    this.#server = Deno.serve({
      hostname: options.hostname ?? "127.0.0.1",
      port: options.port,
      onListen: () => {},
      onError: (err) => {
        log.warn("Status request failed: {err}", { err: (err as Error).message });
        return new Response("internal error\n", { status: 500 });
      },
    }, (req) => this.#handle(req));
    this.address = { hostname: this.#server.addr.hostname, port: this.#server.addr.port };
  }

  /**
   * Listens and serves.
   *
   * @throws {Deno.errors.AddrInUse} When the port is taken.
   */
  static start(options: StatusServerOptions): StatusServer {
    return new StatusServer(options);
  }

  async #handle(req: Request): Promise<Response> {
    const url = new URL(req.url);
    if (req.method !== "GET" && req.method !== "HEAD") {
      return new Response("read-only: GET only\n", {
        status: 405,
        headers: { allow: "GET, HEAD", ...SECURITY_HEADERS },
      });
    }
    switch (url.pathname) {
      case "/":
      case "/index.html":
        return new Response(this.#page, {
          headers: { "content-type": "text/html; charset=utf-8", "cache-control": "no-store", ...SECURITY_HEADERS },
        });
      case "/status": {
        const now = this.#lastPoll = performance.now();
        // A snapshot of a big fleet takes tens of ms on the manager's event
        // loop: however fast pages poll, build one at most every 250 ms.
        const limits = limitsOf(url);
        const key = JSON.stringify(limits);
        let cached = this.#statusCache;
        if (cached === undefined || cached.key !== key || now - cached.at >= STATUS_CACHE_MS) {
          cached = this.#statusCache = { key, at: now, body: JSON.stringify(this.#options.snapshot(limits)) };
        }
        return new Response(cached.body, { headers: { ...JSON_HEADERS, ...SECURITY_HEADERS } });
      }
      case "/metrics": {
        // Metrics need each runner's count of jobs, not the jobs.
        const snapshot = this.#options.snapshot({ jobsPerRunner: 0 });
        return new Response(formatMetrics(snapshot, this.#options.settledByHost?.() ?? []), {
          headers: { "content-type": "text/plain; version=0.0.4; charset=utf-8", ...SECURITY_HEADERS },
        });
      }
      case "/timeline": {
        const finished = this.#options.finished?.() ?? false;
        const body = JSON.stringify(await this.timeline());
        if (finished) {
          this.#finalServed = true;
          this.#finalTimeline?.();
        }
        return new Response(body, { headers: { ...JSON_HEADERS, ...SECURITY_HEADERS } });
      }
      default:
        return new Response("not found: try /, /status, /metrics or /timeline\n", {
          status: 404,
          headers: SECURITY_HEADERS,
        });
    }
  }

  /** The timeline so far: reads the journal bytes appended since the last call. */
  timeline(): Promise<Timeline> {
    // Concurrent requests share one read.
    this.#reading ??= (async () => {
      try {
        const end = this.#options.journalEnd?.();
        const from = end === undefined ? this.#from : { ...this.#from, end };
        const tail = await feedJournalFrom(join(this.#options.resultsDir, JOURNAL_FILE), this.#digest, from);
        this.#from = { offset: tail.end, line: tail.nextLine };
      } catch (err) {
        if (!(err instanceof Deno.errors.NotFound)) throw err;
      } finally {
        this.#reading = undefined;
      }
      return this.#digest.timeline();
    })();
    return this.#reading;
  }

  /**
   * The run has ended (its snapshot says finished). When a page polled in
   * the last 10 s, waits until it has fetched the final timeline, at most
   * `graceMs`, so that it shows how the run ended; otherwise returns at once.
   */
  async finish(graceMs = 3000): Promise<void> {
    if (this.#finalServed || performance.now() - this.#lastPoll > 10_000) return;
    let timer: ReturnType<typeof setTimeout> | undefined;
    await new Promise<void>((resolve) => {
      this.#finalTimeline = resolve;
      timer = setTimeout(resolve, graceMs);
    });
    clearTimeout(timer);
    this.#finalTimeline = undefined;
  }

  /** Stops listening and ends open requests. */
  async close(): Promise<void> {
    await this.#server.shutdown();
  }
}
