// A BullMQ Node Worker and a bullpen host consume the same queue at once.
//
// Adds N jobs with addBulk, runs a Node Worker (no-op processor that says it
// was Node) on the queue while bullpen's echo host also takes from it, waits
// until every job is completed, then reads every job back and prints counts:
// how many each side processed, and how many were started more than once or
// are not completed.
//
//   REDIS_URL=... JOBS=10000 node shared_queue.mjs
import { Queue, Worker } from 'bullmq';

const url = new URL(process.env.REDIS_URL);
const connection = { host: url.hostname, port: Number(url.port) };
const total = Number(process.env.JOBS ?? 10000);
const queue = new Queue('shared', { connection });

let nodeProcessed = 0;
const worker = new Worker(
  'shared',
  async (job) => {
    nodeProcessed += 1;
    return { by: 'node', i: job.data.i };
  },
  { connection, concurrency: 8 },
);

for (let start = 0; start < total; start += 1000) {
  const batch = [];
  for (let i = start; i < Math.min(start + 1000, total); i++) {
    batch.push({ name: 'shared', data: { i } });
  }
  await queue.addBulk(batch);
}

const deadline = Date.now() + 120_000;
for (;;) {
  const counts = await queue.getJobCounts('completed', 'failed');
  if (counts.completed + counts.failed >= total) break;
  if (Date.now() > deadline) throw new Error(`only ${JSON.stringify(counts)} after 120 s`);
  await new Promise((r) => setTimeout(r, 50));
}
await worker.close();

let byNode = 0;
let byBullpen = 0;
let startedTwice = 0;
let notCompleted = 0;
const seen = new Set();
for (let start = 0; start < total; start += 1000) {
  const jobs = await queue.getJobs(['completed', 'failed', 'wait', 'active', 'delayed'], start, start + 999, true);
  for (const job of jobs) {
    seen.add(job.data.i);
    if (!job.finishedOn || job.failedReason) notCompleted += 1;
    if (job.attemptsStarted !== 1 || job.attemptsMade !== 1) startedTwice += 1;
    if (job.returnvalue?.by === 'node') byNode += 1;
    else if (job.returnvalue?.i === job.data.i) byBullpen += 1;
  }
}
console.log(
  JSON.stringify({ total, distinct: seen.size, byNode, byBullpen, nodeProcessed, startedTwice, notCompleted }),
);
await queue.close();
