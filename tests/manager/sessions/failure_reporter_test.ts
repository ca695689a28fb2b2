import assert from "node:assert/strict";
import { configure, type LogRecord, reset } from "@logtape/logtape";
import { ProtocolError, VicoError } from "../../../core/errors.ts";
import { type Failure, FailureReporter } from "../../../manager/sessions/failure_reporter.ts";

const words = {
  counts: { handshakes: "failed handshake(s)", drops: "drops", losses: "losses", departures: "departures" },
  dropping: "Dropping {who}: {reason}",
  lost: "Lost {who}: {reason}",
  failed: "Failed {who}: {reason}",
};

/** Runs `body` with the manager's log lines caught; returns them as level and rendered text. */
async function logsOf(body: () => Promise<void>): Promise<string[]> {
  const lines: string[] = [];
  await configure({
    reset: true,
    sinks: {
      mem: (r: LogRecord) => lines.push(`${r.level} ${r.message.map(String).join("")}`),
    },
    loggers: [
      { category: ["vico"], lowestLevel: "debug", sinks: ["mem"] },
      { category: ["logtape", "meta"], lowestLevel: "warning", sinks: [] },
    ],
  });
  try {
    await body();
  } finally {
    await reset();
  }
  return lines;
}

function failure(err: unknown, over: Partial<Failure> = {}): Failure & { told: string[] } {
  const told: string[] = [];
  return {
    err,
    joined: true,
    holding: false,
    dropReason: undefined,
    peerFault: err instanceof ProtocolError,
    props: { who: "node7" },
    tell: (reason) => Promise.resolve(void told.push(reason)),
    told,
    ...over,
  };
}

Deno.test("FailureReporter drops a peer at fault with a warning and tells it why", async () => {
  const f = failure(new ProtocolError("bad line"));
  const lines = await logsOf(() => new FailureReporter(words).report(f));
  assert.deepEqual(lines, ["warning Dropping node7: bad line"]);
  assert.deepEqual(f.told, ["bad line"]);
});

Deno.test("FailureReporter: a peer lost holding jobs is a warning, one holding nothing only news", async () => {
  const reporter = new FailureReporter(words);
  const gone = new VicoError("CONNECTION_CLOSED", "gone");
  const lines = await logsOf(async () => {
    await reporter.report(failure(gone, { holding: true }));
    await reporter.report(failure(gone));
  });
  assert.deepEqual(lines, ["warning Lost node7: gone", "info Lost node7: gone"]);
});

Deno.test("FailureReporter: after a liveness drop the peer was lost, whatever failed next, and is not told", async () => {
  const f = failure(new ProtocolError("cut mid-line"), { dropReason: "silent for 3s" });
  const lines = await logsOf(() => new FailureReporter(words).report(f));
  assert.deepEqual(lines, ["info Lost node7: silent for 3s"]);
  assert.deepEqual(f.told, []);
});

Deno.test("FailureReporter logs the manager's own failure as an error", async () => {
  const lines = await logsOf(() => new FailureReporter(words).report(failure(new RangeError("disk full"))));
  assert.deepEqual(lines, ["error Failed node7: disk full"]);
});

Deno.test("FailureReporter limits failed handshakes to a bounded rate and counts the rest", async () => {
  const reporter = new FailureReporter(words);
  const lines = await logsOf(async () => {
    for (let i = 0; i < 8; i++) await reporter.report(failure(new ProtocolError("junk"), { joined: false }));
  });
  assert.equal(lines.length, 5, lines.join("\n"));
  assert.ok(lines.every((l) => l === "warning Dropping node7: junk"));
});

Deno.test("FailureReporter gives up telling a peer that does not read within TELL_PEER_MS", async () => {
  const f = failure(new ProtocolError("bad"), { tell: () => new Promise(() => {}) });
  const t0 = performance.now();
  await logsOf(() => new FailureReporter(words).report(f));
  assert.ok(performance.now() - t0 < 5000);
});
