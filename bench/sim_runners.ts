/**
 * Simulated text runners for the engine benchmark: each connects, hails,
 * and answers every job at once with a result of status 0 and no output
 * (no process), until the manager says FINO, or until LIMIT jobs were
 * answered between them (then they hang up). Prints the jobs answered as
 * JSON.
 *
 * MODE `pipe` (the default) speaks the vico extension's pipelined exchange
 * (`want=tag,pipe`): each runner keeps one `PETO` out, and sends each
 * result and its next `PETO` in one write without waiting for the ack, as
 * a one-worker vico runner does. MODE `lockstep` speaks the plain draft
 * (`PETO`, job, `REZULTO`, `PRETA`, `RICEVIS`), as a plain peer does.
 *
 *   deno run -P=vico bench/sim_runners.ts PORT RUNNERS [LIMIT] [MODE]
 *
 * @module
 */

const [port, count, limit = Infinity] = Deno.args.slice(0, 3).map(Number);
const mode = Deno.args[3] ?? "pipe";
let answered = 0;
const enc = new TextEncoder();
const dec = new TextDecoder();

async function simRunner(id: number): Promise<number> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  conn.setNoDelay(true);
  const buf = new Uint8Array(1 << 16);
  let pending = "";
  const readLine = async (): Promise<string> => {
    while (true) {
      const nl = pending.indexOf("\n");
      if (nl >= 0) {
        const line = pending.slice(0, nl);
        pending = pending.slice(nl + 1);
        return line;
      }
      const n = await conn.read(buf);
      if (n === null) throw new Error("closed");
      pending += dec.decode(buf.subarray(0, n));
    }
  };
  const send = (text: string) => conn.write(enc.encode(text));
  if (mode === "pipe") {
    await send("VICO/1 hello proto=text want=tag,pipe\n");
    const ok = await readLine();
    if (!/^VICO\/1 ok .*\bpipe=1\b/.test(ok)) throw new Error(`expected pipe=1, got ${ok}`);
  }
  await send(`SALUTON; MI sim-${id}\n`);
  await readLine(); // VERSIO
  await send("KOMPRENAS\n");
  let jobs = 0;
  if (mode === "pipe") {
    const JOB = "VICO/1 job ";
    let unacked = 0;
    await send("PETO\n");
    let asking = true;
    while (asking || unacked > 0) {
      const line = await readLine();
      if (line.startsWith("VICO/1 ack ")) {
        unacked--;
        continue;
      }
      if (line === "FINO") {
        asking = false;
        continue;
      }
      if (!line.startsWith(JOB)) throw new Error(`expected a job tag, got ${line}`);
      const tag = line.slice(JOB.length).replace(/ seq=[0-9]+$/, "");
      const job = await readLine();
      jobs++;
      unacked++;
      asking = ++answered < limit;
      await send(`VICO/1 result ${tag}\nREZULTO ${job} 0 0\n${asking ? "PETO\n" : ""}`);
    }
    if (answered < limit) await send("FINO ANKAU\n");
    conn.close();
    return jobs;
  }
  while (answered < limit) {
    await send("PETO\n");
    const job = await readLine();
    if (job === "FINO") break;
    await send(`REZULTO ${job} 0 0\n`);
    const preta = await readLine();
    if (preta !== "PRETA") throw new Error(`expected PRETA, got ${preta}`);
    const ricevis = await readLine();
    if (ricevis !== "RICEVIS") throw new Error(`expected RICEVIS, got ${ricevis}`);
    jobs++;
    answered++;
  }
  await send("FINO ANKAU\n");
  conn.close();
  return jobs;
}

const counts = await Promise.all(
  Array.from({ length: count }, (_, i) => simRunner(i).catch(() => 0)),
);
console.log(JSON.stringify({ jobs: counts.reduce((a, b) => a + b, 0) }));
