// Node's `fs`, as much of it as a processor uses to read and write files,
// over the directories the queue grants (`files` in bullpen.toml, seen at
// their `destination`). Anything else is `ENOENT`, as a path that is not
// there; a write to a grant without `writable = true` is `EPERM`. The build
// maps `fs` and `node:fs` here. Reads return a Uint8Array (StarlingMonkey
// has no Buffer) unless an encoding is given.

import { getDirectories } from 'wasi:filesystem/preopens@0.2.12';

// wasi:filesystem's error codes as Node's.
const CODES = {
  access: ['EACCES', 'permission denied'],
  'not-permitted': ['EPERM', 'operation not permitted'],
  'read-only': ['EROFS', 'read-only file system'],
  'no-entry': ['ENOENT', 'no such file or directory'],
  exist: ['EEXIST', 'file already exists'],
  'is-directory': ['EISDIR', 'illegal operation on a directory'],
  'not-directory': ['ENOTDIR', 'not a directory'],
  'not-empty': ['ENOTEMPTY', 'directory not empty'],
  'insufficient-space': ['ENOSPC', 'no space left on device'],
  'file-too-large': ['EFBIG', 'file too large'],
  invalid: ['EINVAL', 'invalid argument'],
  'name-too-long': ['ENAMETOOLONG', 'name too long'],
  loop: ['ELOOP', 'too many symbolic links encountered'],
};

function nodeError(code, syscall, path) {
  const [name, text] = CODES[code] ?? ['EIO', `i/o error (${code})`];
  const error = new Error(`${name}: ${text}, ${syscall} '${path}'`);
  Object.assign(error, { code: name, syscall, path });
  return error;
}

// Runs a wasi:filesystem call, its error-code thrown as Node's error.
function call(syscall, path, run) {
  try {
    return run();
  } catch (error) {
    if (typeof error?.payload === 'string') throw nodeError(error.payload, syscall, path);
    throw error;
  }
}

// The granted directory holding `path`, and the path inside it: the longest
// destination that is `path` or a parent of it.
function locate(path, syscall) {
  const text = String(path instanceof URL ? path.pathname : path);
  const absolute = normalize(text.startsWith('/') ? text : `/${text}`);
  let found;
  for (const [descriptor, root] of getDirectories()) {
    const base = normalize(root);
    const inside = base === '/' ? absolute.slice(1) : absolute === base ? '' : absolute.startsWith(`${base}/`) ? absolute.slice(base.length + 1) : undefined;
    if (inside !== undefined && (!found || base.length > found.base.length)) {
      found = { descriptor, base, inside: inside === '' ? '.' : inside };
    }
  }
  if (!found) throw nodeError('no-entry', syscall, text);
  return { ...found, shown: text };
}

function normalize(path) {
  const parts = [];
  for (const part of path.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') parts.pop();
    else parts.push(part);
  }
  return `/${parts.join('/')}`;
}

function encodingOf(options) {
  return typeof options === 'string' ? options : options?.encoding;
}

function open(path, syscall, openFlags, flags) {
  const at = locate(path, syscall);
  const descriptor = call(syscall, at.shown, () =>
    at.descriptor.openAt({ symlinkFollow: true }, at.inside, openFlags, flags),
  );
  return { descriptor, shown: at.shown };
}

/** Node's `fs.readFileSync(path[, encoding])`. */
export function readFileSync(path, options) {
  const { descriptor, shown } = open(path, 'open', {}, { read: true });
  const chunks = [];
  let offset = 0n;
  for (;;) {
    const [bytes, end] = call('read', shown, () => descriptor.read(1n << 16n, offset));
    chunks.push(bytes);
    offset += BigInt(bytes.length);
    if (end || bytes.length === 0) break;
  }
  const all = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const chunk of chunks) {
    all.set(chunk, at);
    at += chunk.length;
  }
  const encoding = encodingOf(options);
  return encoding ? new TextDecoder(encoding === 'utf-8' ? 'utf8' : encoding).decode(all) : all;
}

function write(path, data, append) {
  const flags = append ? { create: true } : { create: true, truncate: true };
  const { descriptor, shown } = open(path, 'open', flags, { write: true });
  const bytes = ArrayBuffer.isView(data)
    ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength)
    : data instanceof ArrayBuffer
      ? new Uint8Array(data)
      : new TextEncoder().encode(String(data));
  let offset = append ? call('stat', shown, () => descriptor.stat()).size : 0n;
  let at = 0;
  while (at < bytes.length) {
    const written = call('write', shown, () => descriptor.write(bytes.subarray(at), offset));
    at += Number(written);
    offset += written;
  }
}

/** Node's `fs.writeFileSync(path, data)`: needs a `writable` grant. */
export function writeFileSync(path, data) {
  write(path, data, false);
}

/** Node's `fs.appendFileSync(path, data)`: needs a `writable` grant. */
export function appendFileSync(path, data) {
  write(path, data, true);
}

/** Node's `fs.existsSync(path)`. */
export function existsSync(path) {
  try {
    statSync(path);
    return true;
  } catch {
    return false;
  }
}

/** Node's `fs.statSync(path)`: `size`, `isFile()`, `isDirectory()`, `mtimeMs`. */
export function statSync(path) {
  const at = locate(path, 'stat');
  const stat = call('stat', at.shown, () => at.descriptor.statAt({ symlinkFollow: true }, at.inside));
  const modified = stat.dataModificationTimestamp;
  return {
    size: Number(stat.size),
    mtimeMs: modified ? Number(modified.seconds) * 1e3 + modified.nanoseconds / 1e6 : 0,
    isFile: () => stat.type === 'regular-file',
    isDirectory: () => stat.type === 'directory',
    isSymbolicLink: () => stat.type === 'symbolic-link',
  };
}

/** Node's `fs.readdirSync(path)`: the names in a directory. */
export function readdirSync(path) {
  const { descriptor, shown } = open(path, 'scandir', { directory: true }, { read: true });
  const entries = call('scandir', shown, () => descriptor.readDirectory());
  const names = [];
  for (;;) {
    const entry = call('scandir', shown, () => entries.readDirectoryEntry());
    if (!entry) break;
    names.push(entry.name);
  }
  return names.sort();
}

/** Node's `fs.mkdirSync(path[, { recursive }])`: needs a `writable` grant. */
export function mkdirSync(path, options) {
  const at = locate(path, 'mkdir');
  const parts = at.inside.split('/');
  const upTo = options?.recursive ? parts.map((_, i) => parts.slice(0, i + 1).join('/')) : [at.inside];
  for (const inside of upTo) {
    try {
      at.descriptor.createDirectoryAt(inside);
    } catch (error) {
      if (!(options?.recursive && error?.payload === 'exist')) {
        throw typeof error?.payload === 'string' ? nodeError(error.payload, 'mkdir', at.shown) : error;
      }
    }
  }
}

/** Node's `fs.unlinkSync(path)`: needs a `writable` grant. */
export function unlinkSync(path) {
  const at = locate(path, 'unlink');
  call('unlink', at.shown, () => at.descriptor.unlinkFileAt(at.inside));
}

export { promises } from './fs-promises.js';

export default {
  readFileSync,
  writeFileSync,
  appendFileSync,
  existsSync,
  statSync,
  readdirSync,
  mkdirSync,
  unlinkSync,
};
