/**
 * Simulated text runners for the engine benchmark: each connects, hails,
 * and answers every job at once with `REZULTO <job> 0 0` (no process, no
 * output), until the manager says FINO, or until LIMIT jobs were answered
 * between them (then they hang up). Prints the jobs answered as JSON.
 *
 *   deno run -P=vico bench/sim_runners.ts PORT RUNNERS [LIMIT]
 *
 * @module
 */

const [port, count, limit = Infinity] = Deno.args.map(Number);
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
  await send(`SALUTON; MI sim-${id}\n`);
  await readLine(); // VERSIO
  await send("KOMPRENAS\n");
  let jobs = 0;
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
