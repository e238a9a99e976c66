// Builds a JavaScript processor into a bullpen component:
//   node guest-sdk/js/build.mjs <processor.js> <out.wasm> <js-tools dir> [cache dir]
// esbuild bundles the processor, its npm dependencies and this package's
// bullpen side into one module; ComponentizeJS embeds that module in
// SpiderMonkey against wit/processor.wit. scripts/build-processor installs
// the tools and calls this. With a cache dir, a bundle built before (same
// bytes, same WIT, same tools) is not componentized again: the same
// component comes back, byte for byte, so bullpen's compile cache hits too.

import { copyFile, mkdir, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const [source, outArg, tools, cache] = process.argv.slice(2);
if (!source || !outArg || !tools) {
  console.error('usage: node build.mjs <processor.js> <out.wasm> <js-tools dir>');
  process.exit(2);
}
const out = resolve(outArg);
const here = dirname(fileURLToPath(import.meta.url));
const wit = resolve(here, '../../wit');
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
export async function process(job) { return __process(processor, job); }
export async function backoff(attemptsMade, strategy, error, job) { return __backoff(processor, attemptsMade, strategy, error, job); }
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
    // inside bullpen they are this package's.
    alias: { bullpen: join(here, 'src/guest.js'), bullmq: join(here, 'src/guest.js') },
    external: ['bullpen:*', 'wasi:*'],
    logLevel: 'warning',
  });
  const key = createHash('sha256');
  for (const file of [bundle, join(wit, 'processor.wit'), join(tools, 'package-lock.json')]) {
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
      worldName: 'processor',
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
