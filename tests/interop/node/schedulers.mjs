// Job schedulers and deduplication, from a Node producer, processed by
// BullMQ's own Node worker or by a bullpen host: the oracle for what
// bullpen's processing leaves.
//
//   REDIS_URL=... node schedulers.mjs <scenario> node     # a Node Worker processes the jobs
//   REDIS_URL=... node schedulers.mjs <scenario> bullpen  # a bullpen host does (already running)
//
// Prints, as JSON, what a user's producer would observe; the two runs must
// print the same (except where docs/COMPATIBILITY.md says they differ).
import { Queue, Worker } from 'bullmq';

const [scenario, mode] = process.argv.slice(2);
const url = new URL(process.env.REDIS_URL);
const connection = { host: url.hostname, port: Number(url.port) };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// The example guests the bullpen side runs, in JS.
const guests = {
  echo: async (job) => job.data,
  misbehave: async (job) => {
    if (job.data.mode === 'work') await sleep(job.data.ms);
    return 'fine';
  },
};
const guestOf = {
  'scheduler-every-limit': 'echo',
  'scheduler-cron-removal': 'echo',
  'scheduler-long-iteration': 'misbehave',
  deduplication: 'misbehave',
};

const queue = new Queue(scenario, { connection });
let worker;
if (mode === 'node') {
  worker = new Worker(scenario, guests[guestOf[scenario]], { connection, concurrency: 2 });
}

const until = async (what, condition) => {
  const deadline = Date.now() + 20_000;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`${scenario}: still not ${what}`);
    await sleep(20);
  }
};
const completed = () => queue.getCompletedCount();
const finished = (id) => until(`${id} finished`, async () => ['completed', 'failed'].includes(await queue.getJobState(id)));
const summary = async () =>
  (await queue.getJobs(['completed']))
    .map((j) => ({ name: j.name, data: j.data, returnvalue: j.returnvalue, attemptsMade: j.attemptsMade }))
    .sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b)));

let report;
switch (scenario) {
  case 'scheduler-every-limit': {
    await queue.upsertJobScheduler('tick', { every: 200, limit: 3 }, { name: 'tick', data: { t: 1 } });
    await until('3 completed', async () => (await completed()) >= 3);
    await sleep(800);
    report = { completed: await completed(), jobs: await summary() };
    break;
  }
  case 'scheduler-cron-removal': {
    await queue.upsertJobScheduler('every-second', { pattern: '* * * * * *' }, { name: 'tick', data: {} });
    await until('2 completed', async () => (await completed()) >= 2);
    const started = (await queue.getJobs(['completed'])).map((j) => j.processedOn).sort();
    const removed = await queue.removeJobScheduler('every-second');
    // An iteration already in flight may still complete; then none.
    await sleep(1500);
    const afterRemoval = await completed();
    await sleep(2000);
    report = {
      secondApart: started.every((t, i) => i === 0 || t - started[i - 1] >= 900),
      removed,
      stoppedAfterRemoval: (await completed()) === afterRemoval,
      schedulers: await queue.getJobSchedulersCount(),
    };
    break;
  }
  case 'scheduler-long-iteration': {
    await queue.upsertJobScheduler('slow', { every: 300, limit: 2 }, { name: 'slow', data: { mode: 'work', ms: 1500 } });
    await until('an iteration active', async () => (await queue.getActiveCount()) > 0);
    // The first iteration runs 1.5 s; `every` is 0.3 s.
    await sleep(600);
    // Iterations that exist by now: the first, and the second if it was
    // added when the first started (it is due, so maybe running already).
    const iterations = (await queue.getActiveCount()) + (await queue.getDelayedCount()) + (await queue.getWaitingCount());
    await until('2 completed', async () => (await completed()) >= 2);
    report = { iterationsWhileTheFirstRuns: iterations, completed: await completed() };
    break;
  }
  case 'deduplication': {
    const add = async (data, ttl) =>
      (await queue.add('report', data, { deduplication: { id: 'report-42', ...(ttl ? { ttl } : {}) } })).id;
    const first = await add({ mode: 'work', ms: 800 });
    const second = await add({ mode: 'ok' });
    await finished(first);
    const third = await add({ mode: 'ok' });
    await finished(third);
    const fourth = await add({ mode: 'ok' }, 1500);
    await finished(fourth);
    const fifth = await add({ mode: 'ok' }, 1500);
    await sleep(1600);
    const sixth = await add({ mode: 'ok' }, 1500);
    await finished(sixth);
    report = {
      heldWhileItLives: second === first,
      releasedOnCompletion: third !== first,
      heldForItsTtl: fifth === fourth,
      releasedAfterItsTtl: sixth !== fourth,
      jobs: await summary(),
    };
    break;
  }
  default:
    throw new Error(`unknown scenario ${scenario}`);
}
console.log(JSON.stringify(report));
await worker?.close();
await queue.close();
