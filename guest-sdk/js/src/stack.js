// An error's stack as Node writes `err.stack`, for the job's `stacktrace`:
// SpiderMonkey's frames (`fn@file:line:col`) in V8's shape
// (`    at fn (file:line:col)`), mapped from the bundle back to the
// processor's own files, without the frames of this package.
//
// The map comes from the build: build.mjs appends the esbuild source map's
// entries for the processor's files as `globalThis.__bullpenSourceLines`,
// `{ s: [source paths], l: { bundleLine: [[col, source, line, col], …] } }`,
// every number 0-based.

/** `error`'s stack in Node's shape, or undefined when it has none. */
export function nodeStack(error) {
  if (!(error instanceof Error) || typeof error.stack !== 'string') return undefined;
  const frames = [];
  for (const line of error.stack.split('\n')) {
    const frame = parseFrame(line);
    if (frame === undefined) continue;
    const at = mapped(frame);
    if (at === undefined) continue;
    const place = `${at.file}:${at.line}:${at.column}`;
    const name = frame.name ? `${frame.async ? 'async ' : ''}${frame.name}` : '';
    frames.push(name ? `    at ${name} (${place})` : `    at ${place}`);
  }
  return [headline(error), ...frames].join('\n');
}

// V8 starts a stack with `String(error)`: `Name: message`, or either alone.
function headline(error) {
  try {
    return String(error);
  } catch {
    return `${error.name}: ${error.message}`;
  }
}

// `name@file:line:col`, where `name` may be empty, carry `async*` and
// SpiderMonkey's `/<` suffixes for nested functions.
function parseFrame(line) {
  const match = /^(.*)@(.*):(\d+):(\d+)$/.exec(line.trim());
  if (!match) return undefined;
  let name = match[1];
  const async = name.startsWith('async*');
  if (async) name = name.slice('async*'.length);
  name = name.replace(/(\/<)+$/, '').replace(/\/$/, '');
  return { name, async, file: match[2], line: Number(match[3]), column: Number(match[4]) };
}

// Where a bundle position comes from: a processor's file, or undefined for
// this package's frames and the build's glue (not in the map).
function mapped(frame) {
  const map = globalThis.__bullpenSourceLines;
  if (map === undefined) return { file: frame.file, line: frame.line, column: frame.column };
  const segments = map.l[frame.line - 1];
  if (segments === undefined) return undefined;
  const column = frame.column - 1;
  let best = segments[0];
  for (const segment of segments) {
    if (segment[0] > column) break;
    best = segment;
  }
  return { file: map.s[best[1]], line: best[2] + 1, column: best[3] + 1 };
}
