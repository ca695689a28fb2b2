/**
 * Codec for the binary protocol: typed, length-prefixed frames, big-endian.
 * Reading goes through the {@linkcode BufferedReader}; every length is checked
 * against a limit before anything is allocated. File and Result payloads are
 * never read here: the decoder returns their header and the caller streams
 * exactly `size` bytes next. Pure: no I/O of its own.
 *
 * Layouts (`->` node to owner, `<-` owner to node), from the notes:
 *
 * | frame | bytes |
 * | --- | --- |
 * | `-> Join` | `03` u32 len `version;modules` |
 * | `<- Accept` / `-> Accept` | `01` |
 * | `-> Accept` (reply to Start) | `01` u32 len `time` |
 * | `Reject` / `Disconnect` | `02`/`12` u32 len `reason` |
 * | `<- Status` / `-> Status` | `05` / `05` value |
 * | `<- File` | `13` u16 len `name` u32 len `bytes` |
 * | `<- Run` | `14` u16 len `program` u16 len `log` |
 * | `<- Ret` | `15` u16 len `name` |
 * | `<- Wait` / `Start` / `Stop` | `07` / `08` / `09` |
 * | `-> Finished` | `10` status |
 * | `-> Result` | `11` u32 len `bytes` (len `FFFFFFFF`: missing) |
 * | `-> Leave` | `04` |
 *
 * @module
 */

import type { BufferedReader } from "./buffered_reader.ts";
import { ProtocolError } from "../core/errors.ts";
import { clipReason, type Limits } from "../core/limits.ts";
import { FrameType as T, type FromNode, MISSING_FILE_LENGTH, type ToNode } from "./messages.ts";

/** The limits the decoders check lengths against. */
export type FrameLimits = Pick<Limits, "maxFileBytes" | "maxStringBytes">;

const decoder = new TextDecoder("utf-8", { fatal: true });
const encoder = new TextEncoder();

/** Largest File or Result payload a u32 length can carry (FFFFFFFF marks "missing"). */
export const MAX_FRAME_PAYLOAD = MISSING_FILE_LENGTH - 1;

function typeName(type: number): string {
  for (const [name, value] of Object.entries(T)) if (value === type) return name;
  return `0x${type.toString(16).padStart(2, "0")}`;
}

async function readString(r: BufferedReader, lengthBytes: 2 | 4, limit: number, what: string): Promise<string> {
  const len = lengthBytes === 2 ? await r.readU16() : await r.readU32();
  if (len > limit) throw new ProtocolError(`${what} of ${len} bytes exceeds the limit of ${limit}`);
  const bytes = await r.readExact(len);
  try {
    return decoder.decode(bytes);
  } catch {
    throw new ProtocolError(`${what} is not valid UTF-8`, bytes);
  }
}

function checkPayload(size: number, limits: FrameLimits, what: string): void {
  const limit = Math.min(limits.maxFileBytes, MAX_FRAME_PAYLOAD);
  if (size > limit) throw new ProtocolError(`${what} of ${size} bytes exceeds the limit of ${limit}`);
}

/**
 * Reads one frame sent by the owner. For a File frame the payload is left
 * unread: the caller must consume `size` bytes next.
 *
 * @returns The frame, or `null` when the stream ends between frames.
 * @throws {ProtocolError} On an unknown or reserved type, or a length over a limit.
 */
export async function readToNode(r: BufferedReader, limits: FrameLimits): Promise<ToNode | null> {
  if (await r.peekU8() === null) return null;
  const type = await r.readU8();
  switch (type) {
    case T.ACCEPT:
      return { kind: "accept" };
    case T.REJECT:
      return { kind: "reject", reason: await readString(r, 4, limits.maxStringBytes, "Reject reason") };
    case T.DISCONNECT:
      return { kind: "disconnect", reason: await readString(r, 4, limits.maxStringBytes, "Disconnect reason") };
    case T.STATUS:
      return { kind: "statusRequest" };
    case T.FILE: {
      const name = await readString(r, 2, limits.maxStringBytes, "File name");
      const size = await r.readU32();
      checkPayload(size, limits, `File ${JSON.stringify(name)}`);
      return { kind: "file", name, size };
    }
    case T.RUN: {
      const program = await readString(r, 2, limits.maxStringBytes, "Run program");
      const log = await readString(r, 2, limits.maxStringBytes, "Run log file");
      return { kind: "run", program, log };
    }
    case T.RET:
      return { kind: "ret", name: await readString(r, 2, limits.maxStringBytes, "Ret name") };
    case T.WAIT:
      return { kind: "wait" };
    case T.START:
      return { kind: "start" };
    case T.STOP:
      return { kind: "stop" };
    case T.TASK:
      throw new ProtocolError("Task (0x06) is reserved and never sent");
    default:
      throw new ProtocolError(`Unexpected frame type ${typeName(type)} from the owner`);
  }
}

/**
 * Reads one frame sent by a node. An Accept is bare except when it answers
 * Start: pass `startReply: true` while a Start is unanswered. For a Result
 * frame the payload is left unread: the caller must consume `size` bytes next.
 *
 * @returns The frame, or `null` when the stream ends between frames.
 * @throws {ProtocolError} On an unknown or reserved type, or a length over a limit.
 */
export async function readFromNode(
  r: BufferedReader,
  limits: FrameLimits,
  startReply = false,
): Promise<FromNode | null> {
  if (await r.peekU8() === null) return null;
  const type = await r.readU8();
  switch (type) {
    case T.JOIN: {
      const text = await readString(r, 4, limits.maxStringBytes, "Join");
      const semi = text.indexOf(";");
      if (semi === -1) throw new ProtocolError("Join is not <version>;<modules>", text);
      const modules = text.slice(semi + 1).split(",").filter((m) => m.length > 0);
      return { kind: "join", version: text.slice(0, semi), modules };
    }
    case T.ACCEPT:
      if (!startReply) return { kind: "accept" };
      return { kind: "started", time: await readString(r, 4, limits.maxStringBytes, "Start time") };
    case T.REJECT:
      return { kind: "reject", reason: await readString(r, 4, limits.maxStringBytes, "Reject reason") };
    case T.DISCONNECT:
      return { kind: "disconnect", reason: await readString(r, 4, limits.maxStringBytes, "Disconnect reason") };
    case T.STATUS:
      return { kind: "status", value: await r.readU8() };
    case T.FINISHED:
      return { kind: "finished", status: await r.readU8() };
    case T.RESULT: {
      const size = await r.readU32();
      if (size === MISSING_FILE_LENGTH) return { kind: "result", size: 0, missing: true };
      checkPayload(size, limits, "Result");
      return { kind: "result", size, missing: false };
    }
    case T.LEAVE:
      return { kind: "leave" };
    case T.TASK:
      throw new ProtocolError("Task (0x06) is reserved and never sent");
    default:
      throw new ProtocolError(`Unexpected frame type ${typeName(type)} from the node`);
  }
}

/** Builds a frame from a type byte and big-endian fields. */
class FrameBuilder {
  #parts: Uint8Array[] = [];
  #size = 0;

  byte(b: number): this {
    return this.#push(Uint8Array.of(b));
  }
  u16(n: number): this {
    const b = new Uint8Array(2);
    new DataView(b.buffer).setUint16(0, n);
    return this.#push(b);
  }
  u32(n: number): this {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, n);
    return this.#push(b);
  }
  string(s: string, lengthBytes: 2 | 4): this {
    const bytes = encoder.encode(s);
    const max = lengthBytes === 2 ? 0xffff : 0xffffffff;
    if (bytes.length > max) {
      throw new RangeError(`String of ${bytes.length} bytes does not fit a u${lengthBytes * 8} length`);
    }
    return (lengthBytes === 2 ? this.u16(bytes.length) : this.u32(bytes.length)).#push(bytes);
  }
  #push(b: Uint8Array): this {
    this.#parts.push(b);
    this.#size += b.length;
    return this;
  }
  build(): Uint8Array {
    const out = new Uint8Array(this.#size);
    let off = 0;
    for (const p of this.#parts) {
      out.set(p, off);
      off += p.length;
    }
    return out;
  }
}

/**
 * Encodes a frame for a node. A File frame is encoded as its header only
 * (`size` payload bytes must follow).
 *
 * @example
 * ```ts
 * import { encodeToNode } from "./binary_codec.ts";
 * const frame = encodeToNode({ kind: "ret", name: "out.txt" });
 * console.assert(frame[0] === 0x15 && frame[2] === 7);
 * ```
 */
export function encodeToNode(msg: ToNode): Uint8Array {
  const f = new FrameBuilder();
  switch (msg.kind) {
    case "accept":
      return f.byte(T.ACCEPT).build();
    case "reject":
      return f.byte(T.REJECT).string(clipReason(msg.reason), 4).build();
    case "disconnect":
      return f.byte(T.DISCONNECT).string(clipReason(msg.reason), 4).build();
    case "statusRequest":
      return f.byte(T.STATUS).build();
    case "file":
      return f.byte(T.FILE).string(msg.name, 2).u32(msg.size).build();
    case "run":
      return f.byte(T.RUN).string(msg.program, 2).string(msg.log, 2).build();
    case "ret":
      return f.byte(T.RET).string(msg.name, 2).build();
    case "wait":
      return f.byte(T.WAIT).build();
    case "start":
      return f.byte(T.START).build();
    case "stop":
      return f.byte(T.STOP).build();
  }
}

/**
 * Encodes a frame for the owner. A Result frame is encoded as its header
 * only (`size` payload bytes must follow, none when `missing`).
 *
 * @example
 * ```ts
 * import { encodeFromNode } from "./binary_codec.ts";
 * const join = encodeFromNode({ kind: "join", version: "1.0", modules: ["sh", "python3"] });
 * console.assert(new TextDecoder().decode(join.subarray(5)) === "1.0;sh,python3");
 * ```
 */
export function encodeFromNode(msg: FromNode): Uint8Array {
  const f = new FrameBuilder();
  switch (msg.kind) {
    case "join":
      return f.byte(T.JOIN).string(`${msg.version};${msg.modules.join(",")}`, 4).build();
    case "accept":
      return f.byte(T.ACCEPT).build();
    case "started":
      return f.byte(T.ACCEPT).string(msg.time, 4).build();
    case "reject":
      return f.byte(T.REJECT).string(clipReason(msg.reason), 4).build();
    case "disconnect":
      return f.byte(T.DISCONNECT).string(clipReason(msg.reason), 4).build();
    case "status":
      return f.byte(T.STATUS).byte(msg.value).build();
    case "finished":
      return f.byte(T.FINISHED).byte(msg.status).build();
    case "result":
      return f.byte(T.RESULT).u32(msg.missing ? MISSING_FILE_LENGTH : msg.size).build();
    case "leave":
      return f.byte(T.LEAVE).build();
  }
}

/** Whether a Join version is one this side speaks (any `1.x`). */
export function isAcceptedBinaryVersion(version: string): boolean {
  return /^1\.[0-9]+$/.test(version);
}
