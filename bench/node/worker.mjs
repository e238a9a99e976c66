// BullMQ's Node worker as a benchmark contender: an in-process async no-op
// processor (MODE=inprocess), or a sandboxed one from a file, in child
// processes (MODE=processes) or worker threads (MODE=threads). Runs until
// killed; the harness times it from outside.
//
//   REDIS_URL=... QUEUE=bench CONCURRENCY=8 MODE=inprocess node worker.mjs
import { Worker } from 'bullmq';
import { fileURLToPath } from 'node:url';

const url = new URL(process.env.REDIS_URL);
const connection = { host: url.hostname, port: Number(url.port) };
const concurrency = Number(process.env.CONCURRENCY ?? 1);
const mode = process.env.MODE ?? 'inprocess';
const processor =
  mode === 'inprocess' ? async () => null : fileURLToPath(new URL('./noop.cjs', import.meta.url));
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
