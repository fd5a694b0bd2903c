// Canonical msgpack, exactly as protocol/encoding.py defines it: one byte string per value.
//
// Values: null, booleans, integers (-2**63 .. 2**64-1, as a Number when safe, else a BigInt),
// Uint8Array (bin), string (str), Array, and maps (a Map, or a plain object) with string keys.
// Ints take their shortest form (unsigned forms for n >= 0), maps are sorted by the UTF-8 bytes
// of their keys. No floats, no extension types.
//
// Written here rather than taken from @msgpack/msgpack: that library encodes integers beyond
// 2**53 as floats unless told to write every BigInt as 64 bits, and sorts keys by UTF-16 code
// units; wrapping it to be canonical would take as much code as this file, and the shared
// vector file (tests/vectors/canonical.json) proves these bytes equal Python's.

import { compareBytes, concat, equalBytes, fromUtf8, utf8 } from "./bytes.js";

const INT_MIN = -(2n ** 63n);
const INT_MAX = 2n ** 64n - 1n;
export const DEPTH_MAX = 32; // protocol/limits.py ENCODED_DEPTH_MAX

class Writer {
  constructor() {
    this.parts = [];
  }
  byte(...values) {
    this.parts.push(Uint8Array.from(values));
  }
  uint(value, size) {
    const out = new Uint8Array(size);
    let v = BigInt(value);
    for (let i = size - 1; i >= 0; i--) {
      out[i] = Number(v & 255n);
      v >>= 8n;
    }
    this.parts.push(out);
  }
  raw(bytes) {
    this.parts.push(bytes);
  }
}

function writeInt(w, value) {
  const n = BigInt(value);
  if (n < INT_MIN || n > INT_MAX) throw new Error(`int out of range: ${n}`);
  if (n >= 0n) {
    if (n < 128n) w.byte(Number(n));
    else if (n < 256n) (w.byte(0xcc), w.uint(n, 1));
    else if (n < 65536n) (w.byte(0xcd), w.uint(n, 2));
    else if (n < 2n ** 32n) (w.byte(0xce), w.uint(n, 4));
    else (w.byte(0xcf), w.uint(n, 8));
    return;
  }
  const twos = (size) => (1n << BigInt(8 * size)) + n;
  if (n >= -32n) w.byte(Number(twos(1)));
  else if (n >= -128n) (w.byte(0xd0), w.uint(twos(1), 1));
  else if (n >= -32768n) (w.byte(0xd1), w.uint(twos(2), 2));
  else if (n >= -(2n ** 31n)) (w.byte(0xd2), w.uint(twos(4), 4));
  else (w.byte(0xd3), w.uint(twos(8), 8));
}

function writeLength(w, length, fix, fixMax, codes) {
  if (fix !== null && length <= fixMax) w.byte(fix | length);
  else if (codes[0] !== null && length < 256) (w.byte(codes[0]), w.uint(length, 1));
  else if (length < 65536) (w.byte(codes[1]), w.uint(length, 2));
  else (w.byte(codes[2]), w.uint(length, 4));
}

function mapEntries(value) {
  const entries = value instanceof Map ? [...value.entries()] : Object.entries(value);
  const keyed = entries.map(([key, item]) => {
    if (typeof key !== "string") throw new Error("map keys must be str");
    return [utf8(key), item];
  });
  keyed.sort((a, b) => compareBytes(a[0], b[0]));
  return keyed;
}

function write(w, value, depth) {
  if (depth > DEPTH_MAX) throw new Error("value nests too deeply to encode");
  if (value === null || value === undefined) return w.byte(0xc0);
  if (value === true) return w.byte(0xc3);
  if (value === false) return w.byte(0xc2);
  if (typeof value === "bigint") return writeInt(w, value);
  if (typeof value === "number") {
    if (!Number.isSafeInteger(value)) throw new Error("floats are not allowed; use a BigInt");
    return writeInt(w, value);
  }
  if (typeof value === "string") {
    const bytes = utf8(value);
    writeLength(w, bytes.length, 0xa0, 31, [0xd9, 0xda, 0xdb]);
    return w.raw(bytes);
  }
  if (value instanceof Uint8Array) {
    writeLength(w, value.length, null, 0, [0xc4, 0xc5, 0xc6]);
    return w.raw(value);
  }
  if (Array.isArray(value)) {
    writeLength(w, value.length, 0x90, 15, [null, 0xdc, 0xdd]);
    for (const item of value) write(w, item, depth + 1);
    return undefined;
  }
  if (typeof value === "object") {
    const entries = mapEntries(value);
    writeLength(w, entries.length, 0x80, 15, [null, 0xde, 0xdf]);
    for (const [key, item] of entries) {
      writeLength(w, key.length, 0xa0, 31, [0xd9, 0xda, 0xdb]);
      w.raw(key);
      write(w, item, depth + 1);
    }
    return undefined;
  }
  throw new Error(`cannot encode ${typeof value} canonically`);
}

export function encode(value) {
  const w = new Writer();
  write(w, value, 0);
  return concat(...w.parts);
}

class Reader {
  constructor(bytes) {
    this.bytes = bytes;
    this.offset = 0;
  }
  take(n) {
    if (this.offset + n > this.bytes.length) throw new Error("truncated msgpack");
    const out = this.bytes.subarray(this.offset, this.offset + n);
    this.offset += n;
    return out;
  }
  uint(n) {
    let v = 0n;
    for (const byte of this.take(n)) v = (v << 8n) | BigInt(byte);
    return v;
  }
  signed(n) {
    const v = this.uint(n);
    const half = 1n << BigInt(8 * n - 1);
    return v >= half ? v - (half << 1n) : v;
  }
}

function intValue(n) {
  return n >= BigInt(Number.MIN_SAFE_INTEGER) && n <= BigInt(Number.MAX_SAFE_INTEGER)
    ? Number(n)
    : n;
}

function readLength(r, code) {
  const sizes = {
    0xc4: 1, 0xc5: 2, 0xc6: 4, 0xd9: 1, 0xda: 2, 0xdb: 4,
    0xdc: 2, 0xdd: 4, 0xde: 2, 0xdf: 4,
  };
  return Number(r.uint(sizes[code]));
}

function readValue(r, depth) {
  if (depth > DEPTH_MAX) throw new Error("value nests too deeply");
  const code = r.take(1)[0];
  if (code <= 0x7f) return code;
  if (code >= 0xe0) return code - 256;
  if (code >= 0xa0 && code <= 0xbf) return fromUtf8(r.take(code & 31));
  if (code >= 0x90 && code <= 0x9f) return readArray(r, code & 15, depth);
  if (code >= 0x80 && code <= 0x8f) return readMap(r, code & 15, depth);
  switch (code) {
    case 0xc0: return null;
    case 0xc2: return false;
    case 0xc3: return true;
    case 0xc4: case 0xc5: case 0xc6: return r.take(readLength(r, code)).slice();
    case 0xd9: case 0xda: case 0xdb: return fromUtf8(r.take(readLength(r, code)));
    case 0xdc: case 0xdd: return readArray(r, readLength(r, code), depth);
    case 0xde: case 0xdf: return readMap(r, readLength(r, code), depth);
    case 0xcc: return intValue(r.uint(1));
    case 0xcd: return intValue(r.uint(2));
    case 0xce: return intValue(r.uint(4));
    case 0xcf: return intValue(r.uint(8));
    case 0xd0: return intValue(r.signed(1));
    case 0xd1: return intValue(r.signed(2));
    case 0xd2: return intValue(r.signed(4));
    case 0xd3: return intValue(r.signed(8));
    default: throw new Error(`msgpack type 0x${code.toString(16)} is not allowed`);
  }
}

function readArray(r, length, depth) {
  const out = [];
  for (let i = 0; i < length; i++) out.push(readValue(r, depth + 1));
  return out;
}

function readMap(r, length, depth) {
  const out = new Map();
  for (let i = 0; i < length; i++) {
    const key = readValue(r, depth + 1);
    if (typeof key !== "string") throw new Error("map keys must be str");
    if (out.has(key)) throw new Error("duplicate map key");
    out.set(key, readValue(r, depth + 1));
  }
  return out;
}

// Decode canonical msgpack: maps come back as Map. Anything not in canonical form (a longer
// int or length form, unsorted keys, trailing bytes) throws, as protocol/encoding.py refuses it.
export function decode(bytes) {
  const r = new Reader(bytes);
  const value = readValue(r, 0);
  if (r.offset !== bytes.length) throw new Error("trailing bytes after the value");
  if (!equalBytes(encode(value), bytes)) throw new Error("value is not in canonical msgpack form");
  return value;
}
