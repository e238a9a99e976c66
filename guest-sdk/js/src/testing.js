// Jobs for a processor's own tests, in Node and without Redis: the job
// bullpen gives `process`, with what the processor did to it kept for the
// test to read (`logs`, `progress`, `data`, `delayedUntil`).
//
//   import { testJob } from 'bullpen/testing';
//   const job = testJob({ items: [] });
//   assert.deepEqual(await process(job), { total: 0 });

/** A job with `data` (and any of BullMQ's job fields in `fields`) for calling a processor directly. */
export function testJob(data, fields = {}) {
  const { children = {}, prefix = 'bull', ...rest } = fields;
  const queueName = rest.queueName ?? 'test';
  return {
    id: '1',
    name: 'test',
    queueName,
    queueQualifiedName: `${prefix}:${queueName}`,
    attemptsMade: 0,
    attemptsStarted: 1,
    timestamp: Date.now(),
    progress: 0,
    opts: { attempts: 1 },
    ...rest,
    data,
    logs: [],
    delayedUntil: undefined,
    async log(line) {
      this.logs.push(String(line));
    },
    async updateProgress(progress) {
      this.progress = progress;
    },
    async updateData(next) {
      this.data = next;
    },
    async moveToDelayed(timestamp) {
      this.delayedUntil = timestamp;
    },
    async moveToWaitingChildren() {
      return Boolean(children.pending);
    },
    async getChildrenValues() {
      return children.values ?? {};
    },
    async getIgnoredChildrenFailures() {
      return children.ignored ?? {};
    },
    async getFailedChildrenKeys() {
      return children.failed ?? [];
    },
  };
}
