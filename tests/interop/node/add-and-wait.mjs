// BullMQ's Node client adds one job and waits until it is finished, as a
// user's producer would.
//
//   REDIS_URL=... node add-and-wait.mjs <queue> <job name> <data as JSON>
//
// Prints the job's state, return value and failed reason as JSON.
import { Queue, QueueEvents } from 'bullmq';

const [queueName, name, data] = process.argv.slice(2);
const url = new URL(process.env.REDIS_URL);
const connection = { host: url.hostname, port: Number(url.port) };

const queue = new Queue(queueName, { connection });
const events = new QueueEvents(queueName, { connection });
await events.waitUntilReady();
const job = await queue.add(name, JSON.parse(data));
try {
  await job.waitUntilFinished(events, 30_000);
} catch {
  // A failed job rejects; its state says so below.
}
const finished = await queue.getJob(job.id);
console.log(
  JSON.stringify({
    state: await finished.getState(),
    returnvalue: finished.returnvalue,
    failedReason: finished.failedReason,
  }),
);
await events.close();
await queue.close();
