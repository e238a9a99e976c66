// BullMQ's Node client as producer on a Redis Cluster (ioredis `Cluster`),
// with the hash-tagged prefix a cluster needs; or, with REDIS_URL instead of
// CLUSTER_NODES, on one Redis.
//
//   CLUSTER_NODES=127.0.0.1:7000,127.0.0.1:7001 PREFIX='{bull}' MODE=outcomes node cluster.mjs
//   REDIS_URL=redis://127.0.0.1:6390 PREFIX=bull MODE=outcomes node cluster.mjs
//
// MODE=outcomes: adds one job per outcome, waits until each is finished (or
// waiting for its children), and prints per job its state and fields.
// MODE=bulk: adds COUNT jobs to queue `echo` (ids bulk-0…), prints {added};
// with RUNS_URL, to queue `flow` instead, ids ROUND-0…, each a misbehave job
// that requests RUNS_URL/ROUND-i once per run (counted by the test).
import { Queue } from 'bullmq';
import IORedis, { Cluster } from 'ioredis';

const prefix = process.env.PREFIX;
const connection = process.env.CLUSTER_NODES
  ? new Cluster(
      process.env.CLUSTER_NODES.split(',').map((hostPort) => {
        const [host, port] = hostPort.split(':');
        return { host, port: Number(port) };
      }),
    )
  : new IORedis(process.env.REDIS_URL, { maxRetriesPerRequest: null });
const queue = (name) => new Queue(name, { connection, prefix });

if (process.env.MODE === 'bulk') {
  const runs = process.env.RUNS_URL;
  const round = process.env.ROUND ?? 'bulk';
  const target = queue(runs ? 'flow' : 'echo');
  const count = Number(process.env.COUNT);
  for (let start = 0; start < count; start += 500) {
    const batch = [];
    for (let i = start; i < Math.min(count, start + 500); i++) {
      const data = runs ? { mode: 'http', url: `${runs}/${round}-${i}` } : { i };
      batch.push({ name: 'bulk', data, opts: { jobId: `${round}-${i}` } });
    }
    await target.addBulk(batch);
  }
  console.log(JSON.stringify({ added: count }));
  await connection.quit();
  process.exit(0);
}

const queues = {};
const jobs = {};
const add = async (key, name, jobName, data, opts = {}) => {
  queues[name] ??= queue(name);
  // Not the key itself: a job id such as `completed` would be the key of
  // the queue's completed set.
  await queues[name].add(jobName, data, { jobId: `job-${key}`, ...opts });
  jobs[key] = queues[name];
};
await add('completed', 'echo', 'greet', { hello: 'cluster' });
await add('retried', 'flaky', 'flaky', { succeed_on: 3 }, { attempts: 3, backoff: { type: 'fixed', delay: 50 } });
await add('exhausted', 'flaky', 'flaky', { succeed_on: 5 }, { attempts: 2 });
await add('unrecoverable', 'signups', 'bad', {}, { attempts: 5 });
await add('rate-limited', 'limited', 'limited', { wait_ms: 200 });
await add('delayed', 'later', 'later', { delay_ms: 200 });
await add('custom', 'custom', 'linear', { errors: ['Transient', 'RetryNow'] }, {
  attempts: 5,
  backoff: { type: 'linear', delay: 50 },
});
await add('parent', 'fan', 'sum', { numbers: [1, 2, 3] });

const deadline = Date.now() + 60_000;
const result = {};
for (const [key, owner] of Object.entries(jobs)) {
  let state;
  while (!['completed', 'failed'].includes((state = await owner.getJobState(`job-${key}`)))) {
    if (Date.now() > deadline) break;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  const fresh = await owner.getJob(`job-${key}`);
  result[key] = {
    state,
    returnvalue: fresh.returnvalue,
    failedReason: fresh.failedReason,
    attemptsMade: fresh.attemptsMade,
    attemptsStarted: fresh.attemptsStarted,
  };
}
console.log(JSON.stringify(result));
await connection.quit();
process.exit(0);
