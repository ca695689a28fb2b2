import assert from "node:assert/strict";
import { isHex64, MIN_SECRET_BYTES, newNonce, SharedSecret } from "../../protocol/auth.ts";
import {
  formatClientHello,
  formatClientProof,
  formatServerHello,
  parseClientHello,
  parseClientProof,
  parseServerHello,
} from "../../protocol/vico_extension.ts";
import { ProtocolError } from "../../core/errors.ts";

const enc = new TextEncoder();
const secretOf = (text: string) => SharedSecret.from(enc.encode(text));

Deno.test({
  name: "SharedSecret: each side's proof verifies for that side, hello and nonce only",
  permissions: "none",
  async fn() {
    const secret = await secretOf("correct horse battery staple");
    const hello = formatClientHello({ proto: "text", want: [], holds: 0, nonce: newNonce() });
    const nonce = newNonce();
    const manager = await secret.prove("manager", hello, nonce);
    const runner = await secret.prove("runner", hello, nonce);
    assert.ok(isHex64(manager) && isHex64(runner));
    assert.notEqual(manager, runner, "the label differs per side: a proof cannot be reflected");
    assert.ok(await secret.verify("manager", hello, nonce, manager));
    assert.ok(await secret.verify("runner", hello, nonce, runner));
    assert.ok(!(await secret.verify("runner", hello, nonce, manager)), "reflected manager proof");
    assert.ok(!(await secret.verify("manager", hello, newNonce(), manager)), "replayed under a fresh manager nonce");
    const otherHello = formatClientHello({ proto: "text", want: [], holds: 0, nonce: newNonce() });
    assert.ok(!(await secret.verify("manager", otherHello, nonce, manager)), "replayed to a fresh runner nonce");
    const wrong = await secretOf("correct horse battery stapler");
    assert.ok(!(await wrong.verify("manager", hello, nonce, manager)), "another secret");
    assert.ok(!(await secret.verify("manager", hello, nonce, "zz".repeat(32))), "not hex");
    assert.ok(!(await secret.verify("manager", hello, nonce, manager.toUpperCase())), "not lowercase");
  },
});

Deno.test({
  name: "SharedSecret: the proof is HMAC-SHA-256 over the documented transcript (known answer)",
  permissions: "none",
  async fn() {
    // Recompute the proof independently of SharedSecret, from the spec text.
    const secretBytes = enc.encode("0123456789abcdef0123456789abcdef");
    const hello = "VICO/1 hello proto=binary id=n1 nonce=" + "11".repeat(32);
    const nonce = "22".repeat(32);
    const key = await crypto.subtle.importKey("raw", secretBytes, { name: "HMAC", hash: "SHA-256" }, false, [
      "sign",
    ]);
    const mac = new Uint8Array(
      await crypto.subtle.sign("HMAC", key, enc.encode(`VICO/1 runner\n${hello}\n${nonce}\n`)),
    );
    const expected = Array.from(mac, (b) => b.toString(16).padStart(2, "0")).join("");
    assert.equal(await (await SharedSecret.from(secretBytes)).prove("runner", hello, nonce), expected);
  },
});

Deno.test({
  name: "SharedSecret.from refuses a secret shorter than the minimum",
  permissions: "none",
  async fn() {
    await assert.rejects(() => SharedSecret.from(new Uint8Array(MIN_SECRET_BYTES - 1)), RangeError);
    await SharedSecret.from(new Uint8Array(MIN_SECRET_BYTES));
  },
});

Deno.test({
  name: "newNonce: 64 lowercase hex digits, never the same twice",
  permissions: "none",
  fn() {
    const seen = new Set(Array.from({ length: 1000 }, newNonce));
    assert.equal(seen.size, 1000);
    assert.ok([...seen].every(isHex64));
  },
});

Deno.test({
  name: "vico extension: auth and proof lines round-trip byte for byte; malformed ones are ProtocolErrors",
  permissions: "none",
  fn() {
    const nonce = "ab".repeat(32), proof = "cd".repeat(32);
    const auth = formatServerHello({ kind: "auth", nonce, proof });
    assert.equal(auth, `VICO/1 auth nonce=${nonce} proof=${proof}`);
    assert.deepEqual(parseServerHello(auth), { kind: "auth", nonce, proof });
    assert.equal(formatClientProof(proof), `VICO/1 proof ${proof}`);
    assert.equal(parseClientProof(`VICO/1 proof ${proof}`), proof);
    const hello = `VICO/1 hello proto=text id=r1 nonce=${nonce}`;
    assert.equal(parseClientHello(hello).nonce, nonce);
    assert.equal(formatClientHello(parseClientHello(hello)), hello);
    for (
      const bad of [
        `VICO/1 auth nonce=${nonce}`,
        `VICO/1 auth nonce=${nonce} proof=${proof} extra=1`,
        `VICO/1 auth nonce=${nonce.toUpperCase()} proof=${proof}`,
        `VICO/1 auth nonce=${nonce.slice(2)} proof=${proof}`,
      ]
    ) assert.throws(() => parseServerHello(bad), ProtocolError, bad);
    for (const bad of ["VICO/1 proof", `VICO/1 proof ${proof} `, `VICO/1 proof ${proof.slice(1)}`, `PETO`]) {
      assert.throws(() => parseClientProof(bad), ProtocolError, bad);
    }
    assert.throws(() => parseClientHello(`VICO/1 hello proto=text nonce=xyz`), ProtocolError);
  },
});
