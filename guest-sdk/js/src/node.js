// The `bullpen` package in Node, so that a processor file written for
// bullpen runs unchanged in a BullMQ `Worker`: the same error classes
// (BullMQ's worker recognises them by name and message, as it does its own)
// and a `worker.rateLimit` that forwards to the Worker given to `useWorker`.
// Jobs are BullMQ's own there, with every method bullpen's have; `Queue`
// is BullMQ's, on the Worker's connection. src/testing.js makes jobs for a
// processor's own tests, without Redis.

import { RateLimitError } from './errors.js';

export { UnrecoverableError, RateLimitError, DelayedError, WaitingChildrenError } from './errors.js';

let running;

/** Names the BullMQ Worker that `worker.rateLimit` forwards to. */
export function useWorker(bullmqWorker) {
  running = bullmqWorker;
  bullmqWorker.on?.('closed', () => {
    for (const queue of queues.values()) queue.close();
    queues.clear();
  });
}

/** Forwards to the Worker given to `useWorker` (BullMQ's `worker.rateLimit`). */
export const worker = {
  async rateLimit(ms) {
    if (!running) throw new Error('bullpen in Node: call useWorker(worker) before worker.rateLimit');
    await running.rateLimit(ms);
  },
};

// BullMQ's queues that `Queue` adds through, one per name (a processor may
// make a `Queue` per job), closed when the Worker closes.
const queues = new Map();

/** BullMQ's `Queue` on the connection (and prefix) of the Worker given to `useWorker`. */
export class Queue {
  constructor(name) {
    this.name = name;
  }

  async add(name, data, opts) {
    if (!running) throw new Error('bullpen in Node: call useWorker(worker) before new Queue(...).add');
    // BullMQ is the Worker's own, installed beside this package: resolved
    // when first used, so that a processor's tests need no BullMQ.
    const { Queue: BullQueue } = await import('bullmq');
    let queue = queues.get(this.name);
    if (!queue) {
      const { connection, prefix } = running.opts;
      queue = new BullQueue(this.name, prefix === undefined ? { connection } : { connection, prefix });
      queues.set(this.name, queue);
    }
    return queue.add(name, data, opts);
  }
}

/** BullMQ's `Worker.RateLimitError()`. */
export const Worker = {
  RateLimitError() {
    return new RateLimitError();
  },
};

/** A line in the log: the console in Node. */
export function log(level, message) {
  const write =
    { trace: console.debug, debug: console.debug, info: console.info, warn: console.warn, error: console.error }[level] ??
    console.log;
  write(message);
}
