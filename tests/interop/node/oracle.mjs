// BullMQ's own Node worker as the oracle for bullpen.
//
//   REDIS_URL=... node oracle.mjs <scenario> node     # a Node Worker processes the jobs
//   REDIS_URL=... node oracle.mjs <scenario> bullpen  # a bullpen host does (already running)
//   REDIS_URL=... node oracle.mjs <scenario> file <processor.js>
//       # a Node Worker runs that processor file, the one bullpen runs componentized
//
// Adds the scenario's job (on queue <scenario>), waits until it is finished (and, for the retry scenarios, retries it by hand
// and waits again), then prints the job's hash and its events as JSON. The
// Node processors below do what the example guests of the same name do.
import {
  DelayedError,
  Queue,
  RateLimitError,
  UnrecoverableError,
  WaitingChildrenError,
  Worker,
} from 'bullmq';
import IORedis from 'ioredis';

const [scenario, mode, processorFile] = process.argv.slice(2);
const url = new URL(process.env.REDIS_URL);
const connection = { host: url.hostname, port: Number(url.port) };

const named = (name, message) => Object.assign(new Error(message), { name });

// The example guests, in JS.
const guests = {
  echo: async (job) => job.data,
  flaky: async (job) => {
    const { succeed_on = 3, error_name = 'FlakyError' } = job.data;
    const attempt = job.attemptsMade + 1;
    if (attempt < succeed_on) throw named(error_name, `attempt ${attempt} of ${succeed_on} failed`);
    return { attempt };
  },
  validate: async (job) => {
    if (!('email' in job.data)) throw new UnrecoverableError('Invalid job data: "email" is required');
    return { registered: job.data.email };
  },
  'rate-limited': async (job, token, queue) => {
    const { wait_ms = 1000, times = 1 } = job.data;
    if (job.attemptsStarted <= times) {
      await queue.rateLimit(wait_ms);
      throw new RateLimitError();
    }
    return { attempts_started: job.attemptsStarted };
  },
  delayed: async (job, token) => {
    const { delay_ms = 1000, times = 1 } = job.data;
    if (job.attemptsStarted <= times) {
      await job.moveToDelayed(Date.now() + delay_ms, token);
      throw new DelayedError();
    }
    return { attempts_started: job.attemptsStarted };
  },
  'custom-backoff': async (job) => {
    const name = (job.data.errors ?? [])[job.attemptsMade];
    const attempt = job.attemptsMade + 1;
    if (name) throw named(name, `attempt ${attempt} failed with ${name}`);
    return { attempt };
  },
  misbehave: async (job) => {
    const { mode, times = 0, bytes = 0 } = job.data;
    if (mode === 'job-log') for (let i = 0; i < times; i++) await job.log('x'.repeat(bytes));
    return 'fine';
  },
  'fan-out': async (job, token, queue) => {
    if (job.name === 'square') {
      const { n, fail = false } = job.data;
      if (fail) throw new UnrecoverableError(`square of ${n} refused`);
      return n * n;
    }
    if (job.name === 'count') {
      const count = { runs: (job.data.runs ?? 0) + 1, until: job.data.until };
      await job.updateData(count);
      if (count.runs < count.until) throw new Error(`run ${count.runs} of ${count.until}`);
      return { runs: count.runs };
    }
    if (job.name !== 'sum') {
      const followUps = new Queue(job.data.follow_up, { connection });
      const added = await followUps.add('echo', { from: job.id });
      await followUps.close();
      return { added: added.id };
    }
    // The guest's data after serde: every field present.
    let plan = {
      numbers: job.data.numbers ?? [],
      step: job.data.step ?? 0,
      children_queue: job.data.children_queue ?? null,
      fail: job.data.fail ?? [],
      on_failure: job.data.on_failure ?? null,
    };
    if (plan.step === 0) {
      const options = {
        'fail-parent': { failParentOnFailure: true },
        'continue-parent': { continueParentOnFailure: true },
        ignore: { ignoreDependencyOnFailure: true },
        remove: { removeDependencyOnFailure: true },
      }[plan.on_failure] ?? {};
      const children = plan.children_queue ? new Queue(plan.children_queue, { connection }) : queue;
      for (const n of plan.numbers) {
        await children.add('square', { n, fail: plan.fail.includes(n) }, {
          ...options,
          parent: { id: job.id, queue: job.queueQualifiedName },
        });
      }
      plan = { ...plan, step: 1 };
      await job.updateData(plan);
    }
    if (await job.moveToWaitingChildren(token)) throw new WaitingChildrenError();
    const values = (await job.getChildrenValues()) ?? {};
    const { failed = [] } = await job.getDependencies({ failed: {} });
    return {
      sum: Object.values(values).reduce((a, b) => a + b, 0),
      children: Object.keys(values).length,
      failed,
      ignored: (await job.getIgnoredChildrenFailures()) ?? {},
    };
  },
};

// custom-backoff's `backoff` export, in JS (Node's backoffStrategy).
const backoffStrategy = (attemptsMade, type, err, job) => {
  if (err.name === 'RetryNow') return 0;
  if (err.name === 'Fatal') return -1;
  if (type === 'linear') return attemptsMade * (job.opts.backoff?.delay || 1000);
  throw new Error(`Unknown backoff strategy ${type}`);
};

// scenario -> [guest, data, opts, manual retries after finishing, job name]
const scenarios = {
  succeed: ['echo', { hello: 'oracle', n: [1, 2] }, {}],
  'fail-twice-then-succeed': ['flaky', { succeed_on: 3, error_name: 'Boom' }, { attempts: 5, backoff: { type: 'exponential', delay: 100 } }],
  'unrecoverable-on-1-of-5': ['validate', {}, { attempts: 5 }],
  'rate-limited-then-succeed': ['rate-limited', { wait_ms: 300 }, {}],
  'delayed-then-succeed': ['delayed', { delay_ms: 300 }, {}],
  'custom-backoff-delay-now-give-up': ['custom-backoff', { errors: ['Transient', 'RetryNow', 'Fatal'] }, { attempts: 5, backoff: { type: 'linear', delay: 200 } }],
  'attempts-exhausted': ['flaky', { succeed_on: 9 }, { attempts: 3, backoff: { type: 'fixed', delay: 50 } }],
  'retry-completed-no-reset': ['echo', { r: 1 }, {}, [['completed', {}]]],
  'retry-completed-reset-made': ['echo', { r: 2 }, {}, [['completed', { resetAttemptsMade: true }]]],
  'retry-completed-reset-started': ['echo', { r: 3 }, {}, [['completed', { resetAttemptsStarted: true }]]],
  'retry-failed-reset-both': ['flaky', { succeed_on: 9 }, { attempts: 2 }, [['failed', { resetAttemptsMade: true, resetAttemptsStarted: true }]]],
  'step-job-children': ['fan-out', { numbers: [1, 2, 3] }, {}, [], 'sum'],
  'child-fails-parent': ['fan-out', { numbers: [1, 2, 3], fail: [2], on_failure: 'fail-parent' }, {}, [], 'sum'],
  'child-continues-parent': ['fan-out', { numbers: [1, 2, 3], fail: [2], on_failure: 'continue-parent' }, {}, [], 'sum'],
  'child-failure-ignored': ['fan-out', { numbers: [1, 2, 3], fail: [2], on_failure: 'ignore' }, {}, [], 'sum'],
  'child-failure-removed': ['fan-out', { numbers: [1, 2, 3], fail: [2], on_failure: 'remove' }, {}, [], 'sum'],
  'follow-up-job': ['fan-out', { follow_up: 'follow-ups' }, {}, [], 'notify'],
  'update-data-across-attempts': ['fan-out', { until: 3 }, { attempts: 3 }, [], 'count'],
  'keep-logs': ['misbehave', { mode: 'job-log', times: 5, bytes: 3 }, { keepLogs: 2 }],
};

const [guest, data, opts, retries = [], name = scenario] = scenarios[scenario] ?? [];
if (!guest) throw new Error(`unknown scenario ${scenario}`);

const queue = new Queue(scenario, { connection });

let worker;
if (mode === 'node') {
  worker = new Worker(scenario, (job, token) => guests[guest](job, token, queue), {
    connection,
    // BullMQ honours a processor's rate limit only with a limiter (bullpen's
    // workers get one at the first rate limit).
    limiter: { max: Number.MAX_SAFE_INTEGER, duration: 1000 },
    settings: { backoffStrategy },
  });
}

if (mode === 'file') {
  // The file imports 'bullpen': resolved from this directory's node_modules
  // (guest-sdk/js, whose Node side is BullMQ-compatible), so it runs from here.
  const { basename, join } = await import('node:path');
  const { copyFile, mkdir, rm } = await import('node:fs/promises');
  const here = new URL('.', import.meta.url).pathname;
  await mkdir(join(here, '.processors'), { recursive: true });
  const copy = join(here, '.processors', `${process.pid}-${basename(processorFile)}`);
  await copyFile(processorFile, copy);
  const processor = await import(copy);
  await rm(copy);
  const { useWorker } = await import('bullpen');
  const run = processor.process ?? processor.default;
  worker = new Worker(scenario, run, {
    connection,
    limiter: { max: Number.MAX_SAFE_INTEGER, duration: 1000 },
    settings: processor.backoff ? { backoffStrategy: processor.backoff } : {},
  });
  useWorker(worker);
}

const finished = async (id, minStarts = 1) => {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const state = await queue.getJobState(id);
    const job = await queue.getJob(id);
    if ((state === 'completed' || state === 'failed') && job.attemptsStarted >= minStarts) return state;
    if (Date.now() > deadline) throw new Error(`${scenario}/${id} still ${state}`);
    await new Promise((r) => setTimeout(r, 20));
  }
};

const job = await queue.add(name, data, opts);
let state = await finished(job.id);
for (const [fromState, retryOpts] of retries) {
  const before = await queue.getJob(job.id);
  await before.retry(fromState, retryOpts);
  const starts = (retryOpts.resetAttemptsStarted ? 0 : before.attemptsStarted) + 1;
  state = await finished(job.id, starts);
}
await new Promise((r) => setTimeout(r, 300));

const redis = new IORedis(connection);
const hash = await redis.hgetall(`bull:${scenario}:${job.id}`);
const stream = await redis.xrange(`bull:${scenario}:events`, '-', '+');
const events = stream
  .map(([, fields]) => Object.fromEntries(fields.flatMap((v, i) => (i % 2 ? [] : [[v, fields[i + 1]]]))))
  .filter((e) => e.jobId === job.id)
  .map((e) => (e.returnvalue !== undefined ? { ...e, returnvalue: JSON.parse(e.returnvalue) } : e));
const { logs } = await queue.getJobLogs(job.id);
console.log(JSON.stringify({ scenario, mode, state, hash, events, logs }));
await redis.quit();
await worker?.close();
await queue.close();
