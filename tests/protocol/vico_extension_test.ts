import assert from "node:assert/strict";
import { ProtocolError } from "../../core/errors.ts";
import { formatServerHello, parseServerHello } from "../../protocol/vico_extension.ts";
import { SIXTEEN_GIB } from "../../core/limits.ts";

Deno.test("formatServerHello/parseServerHello: maxout carries the manager's output limit, up to 16 GiB and beyond", () => {
  for (const maxOutput of [1, 1000, SIXTEEN_GIB, Number.MAX_SAFE_INTEGER]) {
    const line = formatServerHello({ kind: "ok", pulse: 10, maxOutput });
    assert.match(line, new RegExp(` maxout=${maxOutput}$`));
    const back = parseServerHello(line);
    assert.equal(back.kind === "ok" && back.maxOutput, maxOutput);
  }
  const plain = parseServerHello("VICO/1 ok pulse=10");
  assert.equal(plain.kind === "ok" && plain.maxOutput, undefined);
});

Deno.test("parseServerHello: a malformed or absurd maxout is a protocol error", () => {
  for (const bad of ["maxout=", "maxout=-1", "maxout=1e9", "maxout=12345678901234567", "maxout=9007199254740992"]) {
    assert.throws(() => parseServerHello(`VICO/1 ok ${bad}`), ProtocolError, bad);
  }
});
