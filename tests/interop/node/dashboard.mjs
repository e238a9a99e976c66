// bull-board (a BullMQ dashboard) over queues bullpen has processed: starts
// it on a free port, asks its JSON API what a user's browser would, and
// prints the counts and the failed jobs it shows.
//
//   REDIS_URL=... QUEUES=signups,echo node dashboard.mjs
import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { ExpressAdapter } from '@bull-board/express';
import { Queue } from 'bullmq';
import express from 'express';

const url = new URL(process.env.REDIS_URL);
const connection = { host: url.hostname, port: Number(url.port) };
const names = process.env.QUEUES.split(',');
const queues = names.map((n) => new Queue(n, { connection }));

const serverAdapter = new ExpressAdapter();
serverAdapter.setBasePath('/ui');
createBullBoard({ queues: queues.map((q) => new BullMQAdapter(q)), serverAdapter });
const app = express();
app.use('/ui', serverAdapter.getRouter());
const server = await new Promise((resolve) => {
  const s = app.listen(0, '127.0.0.1', () => resolve(s));
});
const base = `http://127.0.0.1:${server.address().port}/ui`;

const report = {};
for (const name of names) {
  const response = await fetch(`${base}/api/queues?activeQueue=${name}&status=failed&page=1`);
  const body = await response.json();
  const queue = body.queues.find((q) => q.name === name);
  report[name] = {
    http: response.status,
    counts: queue.counts,
    failed: queue.jobs.map((j) => ({ id: j.id, failedReason: j.failedReason })),
  };
}
const page = await fetch(`${base}/`);
report.page = { http: page.status, html: (await page.text()).includes('<div id="root">') };
console.log(JSON.stringify(report));
server.close();
await Promise.all(queues.map((q) => q.close()));
