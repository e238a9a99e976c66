// Time-budget overrun under load: N guests spinning against a 1 s budget
// (queue `spin`) while jobs that sleep 100 ms run beside them (queue
// `work`). Prints, as JSON, how long past its budget each spinning attempt
// ended (finishedOn - processedOn - budget) and how long the 100 ms jobs
// took (finishedOn - processedOn).
import { Queue, QueueEvents } from 'bullmq';

const url = new URL(process.env.REDIS_URL);
const connection = { host: url.hostname, port: Number(url.port) };
const spinners = Number(process.argv[2] ?? 8);
const workers = Number(process.argv[3] ?? 40);
const budget = 1000;

const spin = new Queue('spin', { connection });
const work = new Queue('work', { connection });
const jobs = [];
for (let i = 0; i < spinners; i++) jobs.push(await spin.add('s', { mode: 'spin' }));
// Let the spinners start, then add the 100 ms jobs among them.
await new Promise((r) => setTimeout(r, 200));
const works = [];
for (let i = 0; i < workers; i++) works.push(await work.add('w', { mode: 'work', ms: 100 }));

async function finished(queue, ids) {
  for (;;) {
    const all = await Promise.all(ids.map((j) => queue.getJob(j.id)));
    if (all.every((j) => j.finishedOn)) return all;
    await new Promise((r) => setTimeout(r, 50));
  }
}
const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};
const spun = await finished(spin, jobs);
const worked = await finished(work, works);
const overrun = spun.map((j) => j.finishedOn - j.processedOn - budget);
const took = worked.map((j) => j.finishedOn - j.processedOn);
console.log(JSON.stringify({
  spinners,
  overrun_ms: { p50: pct(overrun, 50), max: Math.max(...overrun) },
  work_100ms_took_ms: { p50: pct(took, 50), p99: pct(took, 99), max: Math.max(...took) },
  reasons: [...new Set(spun.map((j) => j.failedReason))],
}));
await spin.close();
await work.close();
