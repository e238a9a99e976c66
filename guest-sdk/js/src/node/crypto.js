// Node's `crypto`, as much of it as processors use: hashes and HMACs
// (sha1, sha224, sha256, sha384, sha512, md5), computed synchronously as
// Node does, by @noble/hashes; random bytes and UUIDs from the sandbox's
// random source (WASI's, behind `crypto.getRandomValues`); timingSafeEqual.
// `webcrypto` and `subtle` are the engine's own. The build maps `crypto`
// and `node:crypto` here.

import { md5, sha1 } from '@noble/hashes/legacy.js';
import { hmac } from '@noble/hashes/hmac.js';
import { sha224, sha256, sha384, sha512 } from '@noble/hashes/sha2.js';
import { Buffer } from 'buffer';

const HASHES = { md5, sha1, sha224, sha256, sha384, sha512 };

function hashOf(algorithm) {
  const hash = HASHES[String(algorithm).toLowerCase().replace('-', '')];
  if (hash === undefined) {
    throw new Error(`Digest method not supported: ${algorithm} (bullpen's crypto has ${Object.keys(HASHES).join(', ')})`);
  }
  return hash;
}

function bytes(data, encoding) {
  if (typeof data === 'string') return Buffer.from(data, encoding ?? 'utf8');
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (data?.type === 'secret' && typeof data.export === 'function') return bytes(data.export());
  throw new TypeError('The "data" argument must be of type string or an instance of Buffer, TypedArray, or DataView');
}

function output(digest, encoding) {
  const buffer = Buffer.from(digest.buffer, digest.byteOffset, digest.byteLength);
  return encoding === undefined || encoding === 'buffer' ? buffer : buffer.toString(encoding);
}

class Digest {
  #state;
  #done = false;
  constructor(state) {
    this.#state = state;
  }
  update(data, encoding) {
    if (this.#done) throw new Error('Digest already called');
    this.#state.update(bytes(data, encoding));
    return this;
  }
  digest(encoding) {
    if (this.#done) throw new Error('Digest already called');
    this.#done = true;
    return output(this.#state.digest(), encoding);
  }
}

class Hash extends Digest {
  #state;
  constructor(state) {
    super(state);
    this.#state = state;
  }
  copy() {
    return new Hash(this.#state.clone());
  }
}

/** Node's `crypto.createHash(algorithm)`. */
export function createHash(algorithm) {
  return new Hash(hashOf(algorithm).create());
}

/** Node's `crypto.createHmac(algorithm, key)`. */
export function createHmac(algorithm, key) {
  return new Digest(hmac.create(hashOf(algorithm), bytes(key)));
}

/** Node's `crypto.createSecretKey(key)`: a key createHmac takes. */
export function createSecretKey(key, encoding) {
  const secret = Buffer.from(bytes(key, encoding));
  return { type: 'secret', symmetricKeySize: secret.length, export: () => Buffer.from(secret) };
}

/** Node's `crypto.getRandomValues(array)`. */
export function getRandomValues(array) {
  // The engine fills at most 65536 bytes per call, as the Web's does.
  const view = new Uint8Array(array.buffer, array.byteOffset, array.byteLength);
  for (let at = 0; at < view.length; at += 65536) {
    globalThis.crypto.getRandomValues(view.subarray(at, at + 65536));
  }
  return array;
}

/** Node's `crypto.randomBytes(size[, callback])`. */
export function randomBytes(size, callback) {
  const buffer = getRandomValues(Buffer.alloc(size));
  if (callback === undefined) return buffer;
  queueMicrotask(() => callback(null, buffer));
}

/** Node's `crypto.randomUUID()`: a version 4 UUID. */
export function randomUUID() {
  const b = randomBytes(16);
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const hex = b.toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** Node's `crypto.randomInt([min, ]max)`: an integer in [min, max). */
export function randomInt(min, max) {
  if (max === undefined) [min, max] = [0, min];
  const range = max - min;
  if (!Number.isSafeInteger(min) || !Number.isSafeInteger(max) || range <= 0 || range > 2 ** 48) {
    throw new RangeError(`randomInt: max - min must be a safe integer in (0, 2^48], was ${range}`);
  }
  // Rejection sampling over 48 random bits, so every value is as likely.
  const limit = 2 ** 48 - (2 ** 48 % range);
  for (;;) {
    const value = randomBytes(6).readUIntBE(0, 6);
    if (value < limit) return min + (value % range);
  }
}

/** Node's `crypto.timingSafeEqual(a, b)`. */
export function timingSafeEqual(a, b) {
  const [x, y] = [bytes(a), bytes(b)];
  if (x.length !== y.length) throw new RangeError('Input buffers must have the same byte length');
  let differ = 0;
  for (let i = 0; i < x.length; i++) differ |= x[i] ^ y[i];
  return differ === 0;
}

/** Node's `crypto.getHashes()`: the algorithms createHash takes here. */
export function getHashes() {
  return Object.keys(HASHES);
}

export const webcrypto = globalThis.crypto;
export const subtle = globalThis.crypto?.subtle;

export default {
  createHash,
  createHmac,
  createSecretKey,
  getHashes,
  getRandomValues,
  randomBytes,
  randomInt,
  randomUUID,
  subtle,
  timingSafeEqual,
  webcrypto,
};
