// BullMQ's Node worker as a benchmark contender: an in-process async
// processor (MODE=inprocess), or a sandboxed one from a file, in child
// processes (MODE=processes) or worker threads (MODE=threads). WORK=noop
// (default) returns the job's data, as the echo guest does; WORK=transform
// does the json-transform guest's work (sandboxed: transform-sandboxed.js),
// WORK=webhook POSTs the job's payload with fetch (in-process only).
// Runs until killed; the harness times it from outside.
//
//   REDIS_URL=... QUEUE=bench CONCURRENCY=8 MODE=inprocess WORK=noop node worker.mjs
import { Worker } from 'bullmq';
import { fileURLToPath } from 'node:url';
import { transform } from './transform.mjs';

const url = new URL(process.env.REDIS_URL);
const connection = { host: url.hostname, port: Number(url.port) };
const concurrency = Number(process.env.CONCURRENCY ?? 1);
const mode = process.env.MODE ?? 'inprocess';
const work = process.env.WORK ?? 'noop';
if (work === 'webhook' && mode !== 'inprocess') throw new Error(`WORK=${work} runs in-process only`);
// WORK=webhook: what a Node developer writes to call a webhook with the
// built-in fetch (undici, which keeps connections alive between jobs).
const webhook = async (job) => {
  const response = await fetch(job.data.url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-bullpen-job': job.id },
    body: JSON.stringify(job.data.payload),
  });
  await response.arrayBuffer();
  if (response.status >= 500) throw new Error(`${job.data.url} answered ${response.status}`);
  return { status: response.status };
};
const inProcess =
  work === 'transform'
    ? async (job) => transform(job.data)
    : work === 'webhook'
      ? webhook
      : async (job) => job.data;
const sandboxed = work === 'transform' ? './transform-sandboxed.js' : './noop.js';
const processor =
  mode === 'inprocess' ? inProcess : fileURLToPath(new URL(sandboxed, import.meta.url));
const worker = new Worker(process.env.QUEUE, processor, {
  connection,
  concurrency,
  useWorkerThreads: mode === 'threads',
});
await worker.waitUntilReady();
console.log('ready');
process.on('SIGTERM', async () => {
  await worker.close();
  process.exit(0);
});
