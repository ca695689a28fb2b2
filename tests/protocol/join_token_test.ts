import assert from "node:assert/strict";
import { formatJoinToken, JOIN_TOKEN_PREFIX, parseJoinToken } from "../../protocol/join_token.ts";
import { VicoError } from "../../core/errors.ts";

const token = { manager: "head.example:7707", fingerprint: "0f".repeat(32), secret: "e3".repeat(32) };

Deno.test({
  name: "parseJoinToken reads what formatJoinToken writes, whitespace around it ignored",
  permissions: "none",
  fn() {
    const text = formatJoinToken(token);
    assert.ok(text.startsWith(JOIN_TOKEN_PREFIX));
    assert.match(text, /^vico1_[A-Za-z0-9_-]+$/, "one word: safe in a shell, a unit file, an env variable");
    assert.deepEqual(parseJoinToken(`  ${text}\n`), token);
    assert.deepEqual(parseJoinToken(formatJoinToken({ ...token, manager: "[::1]:9000" })).manager, "[::1]:9000");
  },
});

Deno.test({
  name: "parseJoinToken refuses damaged tokens with a USAGE error that says why",
  permissions: "none",
  fn() {
    const good = formatJoinToken(token);
    const b64 = (o: unknown) => "vico1_" + btoa(JSON.stringify(o)).replace(/=+$/, "").replace(/\+/g, "-");
    const cases: [string, RegExp][] = [
      ["", /no vico1_ prefix/],
      [good.slice(6), /no vico1_ prefix/],
      [good.slice(0, 20), /does not decode|no /],
      [good + "!", /base64url/],
      [b64({ f: token.fingerprint, s: token.secret }), /no manager address/],
      [b64({ m: "h:1", f: "abc", s: token.secret }), /no certificate fingerprint/],
      [b64({ m: "h:1", f: token.fingerprint, s: "short" }), /no secret/],
    ];
    for (const [text, why] of cases) {
      assert.throws(
        () => parseJoinToken(text),
        (err: unknown) => err instanceof VicoError && err.code === "USAGE" && why.test(err.message),
        text,
      );
    }
  },
});
