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
import { builtinModules, createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { basename, dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

// Why the other built-ins are not there, and what to use instead.
const INSTEAD = {
  network: 'send requests with fetch(), to the hosts the queue grants in allowed_outbound_hosts',
  processes: 'a processor runs alone in its sandbox and cannot start processes or threads',
  os: 'the sandbox shows nothing of the host: read settings from process.env (the queue\'s environment grant)',
  zlib: 'bundle a pure-JavaScript library instead, such as fflate or pako',
  stream: 'use the Web streams (ReadableStream, WritableStream), or the readable-stream package',
  assert: 'throw an Error yourself, or bundle a pure-JavaScript assertion library',
  string_decoder: 'use TextDecoder',
  querystring: 'use URLSearchParams',
  timers: 'use the globals setTimeout and setInterval',
};
const WHY = {
  http: 'network', https: 'network', http2: 'network', net: 'network', tls: 'network', dgram: 'network', dns: 'network',
  child_process: 'processes', cluster: 'processes', worker_threads: 'processes',
  os: 'os', zlib: 'zlib', stream: 'stream', assert: 'assert', string_decoder: 'string_decoder',
  querystring: 'querystring', timers: 'timers',
};

// esbuild failed, and said why.
const BUNDLE_FAILED = new Error('esbuild failed');

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
  await bundleWith(esbuild, {
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
    // inside bullpen they are this package's. Node's built-ins are this
    // package's stand-ins (`fs` over the `files` grants) or the browser
    // packages bundlers use; the others are refused, saying what to use.
    alias: {
      bullpen: join(here, 'src/guest.js'),
      bullmq: join(here, 'src/guest.js'),
    },
    plugins: [nodeBuiltinsPlugin()],
    inject: [join(here, 'src/node/globals.js')],
    // The packages behind the stand-ins come with the build tools.
    nodePaths: [join(tools, 'node_modules')],
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
} catch (error) {
  if (error !== BUNDLE_FAILED) throw error;
  process.exitCode = 1;
} finally {
  await rm(stage, { recursive: true, force: true });
}

// Runs esbuild: on errors, which it has printed with their file and line,
// exits without a stack trace of its own.
async function bundleWith(esbuild, options) {
  try {
    await esbuild.build(options);
  } catch (error) {
    if (!Array.isArray(error?.errors)) throw error;
    throw BUNDLE_FAILED;
  }
}

// Node's built-in modules a processor may import, by both their names:
// this package's stand-ins, or the packages bundlers use for the browser.
function nodeBuiltins() {
  const own = (file) => join(here, 'src', file);
  const tool = (name) => require.resolve(name);
  const modules = {
    fs: own('fs.js'),
    'fs/promises': own('fs-promises.js'),
    crypto: own('node/crypto.js'),
    url: own('node/url.js'),
    util: own('node/util.js'),
    buffer: tool('buffer/'),
    events: tool('events/'),
    path: tool('path-browserify'),
    'path/posix': tool('path-browserify'),
  };
  return Object.fromEntries(Object.entries(modules).flatMap(([name, path]) => [[name, path], [`node:${name}`, path]]));
}

// Resolves Node's built-ins to their stand-ins, free of side effects so
// that what a processor does not use (the injected Buffer) is left out;
// fails the build at an import of one the sandbox has no stand-in for,
// naming it and what to use instead.
function nodeBuiltinsPlugin() {
  const standIns = nodeBuiltins();
  const builtins = new Set(builtinModules.filter((name) => !name.startsWith('_')));
  return {
    name: 'bullpen-node-builtins',
    setup(build) {
      build.onResolve({ filter: /^[a-z_/:0-9]+$/ }, (args) => {
        if (standIns[args.path] !== undefined) return { path: standIns[args.path], sideEffects: false };
        const name = args.path.replace(/^node:/, '');
        if (!builtins.has(name) && !args.path.startsWith('node:')) return undefined;
        const instead = INSTEAD[WHY[name.split('/')[0]]] ?? 'it has no counterpart in a WebAssembly sandbox';
        return {
          errors: [
            {
              text: `"${args.path}" is a Node built-in that bullpen's sandbox does not have: ${instead} (bullpen has buffer, crypto, events, fs, path, url and util)`,
            },
          ],
        };
      });
    },
  };
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
