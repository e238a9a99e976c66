// Builds a JavaScript or TypeScript processor into a bullpen component:
//   node build.mjs <processor.js|.ts> <out.wasm> <js-tools dir> <wit dir> [cache dir]
// esbuild bundles the processor, its npm dependencies and this package's
// bullpen side into one module; ComponentizeJS embeds that module in
// SpiderMonkey against the world `processor-js` of the wit dir (staged by
// `bullpen build`: the contract, ./world.wit and the WASI packages they
// import), which installs the tools and calls this. With a
// cache dir, a bundle built before (same bytes, same WIT, same tools) is
// not componentized again: the same component comes back, byte for byte,
// so bullpen's compile cache hits too.

import { appendFile, copyFile, mkdir, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { basename, dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const [source, outArg, tools, witArg, cache] = process.argv.slice(2);
if (!source || !outArg || !tools || !witArg) {
  console.error('usage: node build.mjs <processor.js> <out.wasm> <js-tools dir> <wit dir> [cache dir]');
  process.exit(2);
}
const out = resolve(outArg);
const here = dirname(fileURLToPath(import.meta.url));
const wit = resolve(witArg);
const require = createRequire(join(tools, 'package.json'));
const esbuild = require('esbuild');

const stage = await mkdtemp(join(tmpdir(), 'bullpen-js-'));
try {
  const bundle = join(stage, 'processor.js');
  // The exports the processor world asks for, over whatever the file
  // exports. Paths in the bundle are relative to the processor's directory,
  // so the same sources give the same bundle (and a cache hit).
  const sourceDir = dirname(resolve(source));
  await esbuild.build({
    stdin: {
      contents: `import * as processor from ${JSON.stringify(`./${basename(source)}`)};
import { __process, __backoff } from 'bullpen';
export function process(job) { return __process(processor, job); }
export function backoff(attemptsMade, strategy, error, job) { return __backoff(processor, attemptsMade, strategy, error, job); }
`,
      resolveDir: sourceDir,
      sourcefile: 'bullpen-entry.js',
    },
    absWorkingDir: sourceDir,
    outfile: bundle,
    bundle: true,
    format: 'esm',
    platform: 'neutral',
    mainFields: ['module', 'main'],
    conditions: ['bullpen'],
    // A processor written for BullMQ imports its classes from 'bullmq':
    // inside bullpen they are this package's; Node's `fs` is read over the
    // `files` grants.
    alias: {
      bullpen: join(here, 'src/guest.js'),
      bullmq: join(here, 'src/guest.js'),
      fs: join(here, 'src/fs.js'),
      'node:fs': join(here, 'src/fs.js'),
      'fs/promises': join(here, 'src/fs-promises.js'),
      'node:fs/promises': join(here, 'src/fs-promises.js'),
    },
    external: ['bullpen:*', 'wasi:*'],
    sourcemap: 'external',
    sourcesContent: false,
    logLevel: 'warning',
  });
  // The source lines of the processor's own files, for its stack traces
  // (src/stack.js): appended, so that no bundle line moves.
  const lines = sourceLines(JSON.parse(await readFile(`${bundle}.map`, 'utf8')), stage, sourceDir);
  await appendFile(bundle, `\nglobalThis.__bullpenSourceLines = ${JSON.stringify(lines)};\n`);
  const key = createHash('sha256');
  for (const file of [bundle, join(wit, 'processor.wit'), join(wit, 'world.wit'), join(tools, 'package-lock.json')]) {
    key.update(await readFile(file));
  }
  const cached = cache && join(cache, `${key.digest('hex')}.wasm`);
  if (cached && existsSync(cached)) {
    await copyFile(cached, `${out}.${process.pid}.partial`);
  } else {
    // ComponentizeJS maps the working directory into the engine: only the
    // bundle should be there.
    process.chdir(stage);
    const { componentize } = await import(
      pathToFileURL(join(tools, 'node_modules/@bytecodealliance/componentize-js/src/componentize.js'))
    );
    const { component } = await componentize({
      sourcePath: bundle,
      witPath: wit,
      worldName: 'processor-js',
    });
    await writeFile(`${out}.${process.pid}.partial`, component);
    if (cached) {
      await mkdir(cache, { recursive: true });
      await copyFile(`${out}.${process.pid}.partial`, `${cached}.${process.pid}.partial`);
      await rename(`${cached}.${process.pid}.partial`, cached);
    }
  }
  await rename(`${out}.${process.pid}.partial`, out);
} finally {
  await rm(stage, { recursive: true, force: true });
}

// The entries of a source map that point into the processor's files (not
// this package, not the generated entry), by bundle line:
// `{ s: [paths relative to the processor's directory], l: { line: [[column,
// source, line, column], …] } }`, every number 0-based.
function sourceLines(map, mapDir, sourceDir) {
  const sdk = resolve(here, 'src') + sep;
  const keep = map.sources.map((path) => {
    const absolute = resolve(mapDir, path);
    if (absolute.startsWith(sdk) || basename(path) === 'bullpen-entry.js') return undefined;
    return relative(sourceDir, absolute).split(sep).join('/');
  });
  const sources = [];
  const index = new Map();
  const lines = {};
  let [source, line, column] = [0, 0, 0];
  map.mappings.split(';').forEach((text, bundleLine) => {
    let bundleColumn = 0;
    for (const segment of text ? text.split(',') : []) {
      const fields = vlq(segment);
      bundleColumn += fields[0];
      if (fields.length < 4) continue;
      source += fields[1];
      line += fields[2];
      column += fields[3];
      const path = keep[source];
      if (path === undefined) continue;
      if (!index.has(path)) index.set(path, sources.push(path) - 1);
      (lines[bundleLine] ??= []).push([bundleColumn, index.get(path), line, column]);
    }
  });
  return { s: sources, l: lines };
}

// The numbers of one source-map segment (base64 VLQ).
function vlq(segment) {
  const digits = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
  const numbers = [];
  let [value, shift] = [0, 0];
  for (const char of segment) {
    const digit = digits.indexOf(char);
    value += (digit & 31) << shift;
    if (digit & 32) {
      shift += 5;
    } else {
      numbers.push(value & 1 ? -(value >>> 1) : value >>> 1);
      [value, shift] = [0, 0];
    }
  }
  return numbers;
}
