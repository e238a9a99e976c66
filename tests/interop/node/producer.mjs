// BullMQ's Node client as producer and observer of a bullpen host.
//
// Adds jobs with the option shapes users use, listens with QueueEvents, waits
// until every job is finished, and prints, as one JSON object, what the Node
// client reads back: per job its state and fields, per queue the events.
//
//   REDIS_URL=redis://127.0.0.1:6390 node producer.mjs
import { Queue, QueueEvents } from 'bullmq';

const url = new URL(process.env.REDIS_URL);
const connection = { host: url.hostname, port: Number(url.port) };

const queueNames = ['echo', 'flaky', 'signups', 'custom', 'later', 'limited', 'misbehave', 'keep', 'keepfail'];
const queues = Object.fromEntries(queueNames.map((n) => [n, new Queue(n, { connection })]));
const events = {};
const listeners = [];
for (const name of queueNames) {
  const qe = new QueueEvents(name, { connection });
  listeners.push(qe);
  events[name] = [];
  for (const kind of ['waiting', 'active', 'progress', 'completed', 'failed', 'delayed']) {
    qe.on(kind, (args) => events[name].push({ event: kind, ...args }));
  }
  await qe.waitUntilReady();
}

const jobs = {};
const add = async (key, queue, name, data, opts = {}) => {
  jobs[key] = { queue, job: await queues[queue].add(name, data, opts) };
};

await add('echo', 'echo', 'greet', { hello: 'node', nested: { a: [1, 2] } }, { jobId: 'custom-id-1' });
await add('priority', 'echo', 'prio', { p: 5 }, { priority: 5 });
await add('lifo', 'echo', 'lifo', { l: true }, { lifo: true });
await add('delayed-add', 'echo', 'late', { d: 1 }, { delay: 300 });
await add('remove-on-complete', 'echo', 'gone', { r: 1 }, { removeOnComplete: true });
// A count keeps that many finished jobs in the whole queue: queues of their own.
await add('keep-1-a', 'keep', 'keep', { k: 1 }, { removeOnComplete: 1 });
await add('keep-1-b', 'keep', 'keep', { k: 2 }, { removeOnComplete: 1 });
await add('exponential-jitter', 'flaky', 'exp', { succeed_on: 3, error_name: 'Boom' }, {
  attempts: 3,
  backoff: { type: 'exponential', delay: 100, jitter: 0.5 },
});
await add('exhausted', 'flaky', 'fixed', { succeed_on: 3 }, { attempts: 2, backoff: { type: 'fixed', delay: 50 } });
await add('backoff-number', 'flaky', 'number', { succeed_on: 2 }, { attempts: 2, backoff: 50 });
await add('remove-on-fail', 'flaky', 'gone', { succeed_on: 5 }, { attempts: 1, removeOnFail: true });
await add('keep-failed-1-a', 'keepfail', 'keep', { succeed_on: 5 }, { attempts: 1, removeOnFail: 1 });
await add('keep-failed-1-b', 'keepfail', 'keep', { succeed_on: 5 }, { attempts: 1, removeOnFail: 1 });
await add('unrecoverable', 'signups', 'bad', {}, { attempts: 5 });
await add('valid', 'signups', 'good', { email: 'ada@example.com', name: 'Ada' });
await add('custom', 'custom', 'linear', { errors: ['Transient', 'RetryNow'] }, {
  attempts: 5,
  backoff: { type: 'linear', delay: 100 },
});
await add('delayed', 'later', 'later', { delay_ms: 300 });
await add('rate-limited', 'limited', 'limited', { wait_ms: 300 });
await add('progress', 'misbehave', 'progress', { mode: 'bad-progress' });
await add('keep-logs', 'misbehave', 'logs', { mode: 'job-log', times: 5, bytes: 3 }, { keepLogs: 2 });
const bulk = await queues.echo.addBulk([
  { name: 'bulk', data: { n: 1 } },
  { name: 'bulk', data: { n: 2 } },
  { name: 'bulk', data: { n: 3 } },
]);
bulk.forEach((job, i) => {
  jobs[`bulk-${i}`] = { queue: 'echo', job };
});

const deadline = Date.now() + 30_000;
const report = { jobs: {}, events };
for (const [key, { queue, job }] of Object.entries(jobs)) {
  let state;
  for (;;) {
    state = await queues[queue].getJobState(job.id);
    if (state === 'completed' || state === 'failed' || state === 'unknown') break;
    if (Date.now() > deadline) throw new Error(`${key} (${queue}/${job.id}) still ${state}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  const fresh = await queues[queue].getJob(job.id);
  const logs = await queues[queue].getJobLogs(job.id);
  report.jobs[key] = {
    id: job.id,
    queue,
    state,
    exists: fresh !== undefined,
    returnvalue: fresh?.returnvalue ?? null,
    returnvalueType: typeof fresh?.returnvalue,
    failedReason: fresh?.failedReason ?? null,
    stacktrace: fresh?.stacktrace ?? null,
    attemptsMade: fresh?.attemptsMade ?? null,
    attemptsStarted: fresh?.attemptsStarted ?? null,
    progress: fresh?.progress ?? null,
    logs: logs.logs,
    processedBy: fresh?.processedBy ?? null,
    processedOn: fresh?.processedOn ?? null,
    finishedOn: fresh?.finishedOn ?? null,
  };
}
// Job.retry() error cases from Node: a job that does not exist, a job not
// in the state named, and an active job.
const retryError = async (job, state) => {
  try {
    await job.retry(state);
    return null;
  } catch (e) {
    return e.message;
  }
};
const { Job } = await import('bullmq');
report.retryErrors = {
  missing: await retryError(new Job(queues.echo, 'x', {}, {}, 'no-such-job'), 'failed'),
  wrongState: await retryError(await queues.echo.getJob('custom-id-1'), 'failed'),
};
const slow = await queues.misbehave.add('slow', { mode: 'work', ms: 1500 });
for (let i = 0; i < 200 && (await queues.misbehave.getJobState(slow.id)) !== 'active'; i++) {
  await new Promise((r) => setTimeout(r, 10));
}
report.retryErrors.active = await retryError(await queues.misbehave.getJob(slow.id), 'failed');
report.retryErrors.activeId = slow.id;

// Let the last events arrive.
await new Promise((r) => setTimeout(r, 300));
console.log(JSON.stringify(report));
await Promise.all([...listeners.map((l) => l.close()), ...Object.values(queues).map((q) => q.close())]);
