// Node's `fs/promises` over src/fs.js: the same calls, answered at once.

import * as fs from './fs.js';

/** Node's `fsPromises.readFile(path[, encoding])`. */
export async function readFile(path, options) {
  return fs.readFileSync(path, options);
}

/** Node's `fsPromises.writeFile(path, data)`. */
export async function writeFile(path, data) {
  fs.writeFileSync(path, data);
}

/** Node's `fsPromises.appendFile(path, data)`. */
export async function appendFile(path, data) {
  fs.appendFileSync(path, data);
}

/** Node's `fsPromises.readdir(path)`. */
export async function readdir(path) {
  return fs.readdirSync(path);
}

/** Node's `fsPromises.stat(path)`. */
export async function stat(path) {
  return fs.statSync(path);
}

/** Node's `fsPromises.mkdir(path[, options])`. */
export async function mkdir(path, options) {
  fs.mkdirSync(path, options);
}

/** Node's `fsPromises.unlink(path)`. */
export async function unlink(path) {
  fs.unlinkSync(path);
}

/** Node's `fsPromises.access(path)`: rejects with ENOENT when it is not there. */
export async function access(path) {
  fs.statSync(path);
}

export const promises = { readFile, writeFile, appendFile, readdir, stat, mkdir, unlink, access };
export default promises;
