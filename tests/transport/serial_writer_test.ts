import assert from "node:assert/strict";
import { SerialWriter } from "../../transport/serial_writer.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

/** A transport that records each write and lets the test decide when it completes. */
function recording() {
  const writes: string[] = [];
  const pending: (() => void)[] = [];
  let failWith: unknown;
  return {
    writes,
    release: () => pending.splice(0).forEach((r) => r()),
    fail: (err: unknown) => (failWith = err),
    transport: {
      write(p: Uint8Array): Promise<void> {
        if (failWith !== undefined) return Promise.reject(failWith);
        writes.push(dec.decode(p));
        return new Promise<void>((resolve) => pending.push(resolve));
      },
    },
  };
}

Deno.test({
  name: "SerialWriter.write() coalesces one turn's messages into one write, text and bytes in order, UTF-8 whole",
  permissions: "none",
  async fn() {
    const t = recording();
    const w = new SerialWriter(t.transport);
    const done = [w.write("VICO/1 ack a\n"), w.write(enc.encode("PULSO\n")), w.write("é ✓\n"), w.write("FINO\n")];
    await Promise.resolve();
    await Promise.resolve();
    t.release();
    await Promise.all(done);
    assert.deepEqual(t.writes, ["VICO/1 ack a\nPULSO\né ✓\nFINO\n"]);
  },
});

Deno.test({
  name: "SerialWriter.write() queues what comes during a write for the next one; a failed write fails the later ones",
  permissions: "none",
  async fn() {
    const t = recording();
    const w = new SerialWriter(t.transport);
    const first = w.write("one\n");
    await new Promise((r) => setTimeout(r, 0));
    assert.deepEqual(t.writes, ["one\n"]);
    const second = [w.write(enc.encode("two\n")), w.write("three\n")];
    t.release();
    await new Promise((r) => setTimeout(r, 0));
    assert.deepEqual(t.writes, ["one\n", "two\nthree\n"]);
    t.fail(new Error("gone"));
    t.release();
    await Promise.all([first, ...second]);
    await assert.rejects(() => w.write("four\n"), /gone/);
    await assert.rejects(() => w.write("five\n"), /gone/);
  },
});
