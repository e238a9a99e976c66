// Node's `url`: the WHATWG URL classes (the engine's own) and the file URL
// helpers. The build maps `url` and `node:url` here.

export const URL = globalThis.URL;
export const URLSearchParams = globalThis.URLSearchParams;

/** Node's `url.fileURLToPath(url)` (POSIX paths). */
export function fileURLToPath(url) {
  const parsed = typeof url === 'string' ? new URL(url) : url;
  if (parsed.protocol !== 'file:') throw new TypeError('The URL must be of scheme file');
  if (parsed.hostname !== '') throw new TypeError('File URL host must be "localhost" or empty');
  if (/%2f/i.test(parsed.pathname)) throw new TypeError('File URL path must not include encoded / characters');
  return decodeURIComponent(parsed.pathname);
}

/** Node's `url.pathToFileURL(path)` (POSIX paths). */
export function pathToFileURL(path) {
  const url = new URL('file://');
  url.pathname = String(path).split('/').map(encodeURIComponent).join('/');
  return url;
}

export default { URL, URLSearchParams, fileURLToPath, pathToFileURL };
