// The `bullpen` package as a processor sees it inside bullpen: BullMQ's
// error classes and job methods, over the bullpen:processor WIT imports.
// bullpen build bundles it with the processor (esbuild condition
// `bullpen`); in Node the package is src/node.js instead.

import { log as hostLog, progress as hostProgress, addLog, failureStack } from 'bullpen:processor/host@0.2.2';
import {
  add as addJob,
  updateData as hostUpdateData,
  readChildren,
  moveToWaitingChildren as hostMoveToWaitingChildren,
  queuePrefix,
} from 'bullpen:processor/jobs@0.2.2';
import { getEnvironment } from 'wasi:cli/environment@0.2.12';
import { RateLimitError } from './errors.js';
import { nodeStack } from './stack.js';

export { UnrecoverableError, RateLimitError, DelayedError, WaitingChildrenError } from './errors.js';

// What the processor asked for before throwing RateLimitError or
// DelayedError, as BullMQ's `worker.rateLimit` and `job.moveToDelayed` do
// before the matching throw. Forgotten when each attempt starts: a reused
// instance (`max_instance_reuse_count`) runs several.
const asked = { rateLimitMs: undefined, delayedUntil: undefined };

// Node's `process.env`: the queue's `environment` and `secrets` grants,
// read when first asked in a call. Not before: the build runs the module's
// top level once, and the snapshot keeps what it read then (no grants), so
// a processor reads `process.env` inside `process`; each call forgets what
// was read before it.
let environment;
if (globalThis.process === undefined) {
  globalThis.process = {
    get env() {
      return (environment ??= Object.fromEntries(getEnvironment()));
    },
  };
}

/** bullpen's stand-in for the BullMQ `Worker` running the processor. */
export const worker = {
  /** Pauses the queue for `ms` milliseconds once the processor throws `RateLimitError` (BullMQ's `worker.rateLimit`). */
  async rateLimit(ms) {
    asked.rateLimitMs = ms;
  },
};

/** In Node, names the BullMQ Worker; inside bullpen the host is the worker, so there is nothing to name. */
export function useWorker() {}

/** BullMQ's `Worker.RateLimitError()`. */
export const Worker = {
  RateLimitError() {
    return new RateLimitError();
  },
};

/** A line in the host's log, tagged with the queue and job: `level` is trace, debug, info, warn or error. */
export function log(level, message) {
  hostLog(level, String(message));
}

/** BullMQ's `Queue`, for adding jobs to the queues this one is granted (`add_to_queues`). */
export class Queue {
  constructor(name) {
    this.name = name;
  }

  /** BullMQ's `queue.add(name, data, opts)`; `opts.parent` may name only the job being processed. */
  async add(name, data, opts = {}) {
    const { parent, ...rest } = opts;
    if (parent && current && (String(parent.id) !== current.id || !sameQueue(parent.queue, current))) {
      throw new Error(`a processor can add children only to the job it runs (${current.queueName}:${current.id}), not to ${parent.queue}:${parent.id}`);
    }
    const id = addJob({
      queue: this.name,
      name: String(name),
      data: JSON.stringify(data === undefined ? null : data),
      options: JSON.stringify(rest),
      child: Boolean(parent),
    });
    return { id, name, data, queueName: this.name, opts };
  }
}

function sameQueue(queueKey, job) {
  // BullMQ names a parent's queue by its qualified name, `<prefix>:<queue>`.
  return queueKey === job.queueQualifiedName || queueKey === job.queueName;
}

let current;
// The queue's key prefix ([redis] prefix), asked once: it is the queue's.
let prefix;

/** One attempt of a BullMQ job, with the fields and methods of BullMQ's `Job` that a processor uses. */
export class Job {
  constructor(raw) {
    this.id = raw.id;
    this.name = raw.name;
    this.queueName = raw.queue;
    this.queueQualifiedName = `${(prefix ??= queuePrefix())}:${raw.queue}`;
    this.data = JSON.parse(raw.data);
    this.attemptsMade = raw.attemptsMade;
    this.attemptsStarted = raw.attemptsStarted;
    this.timestamp = Number(raw.timestamp);
    this.progress = 0;
    this.opts = { attempts: raw.maxAttempts };
    if (raw.backoff) {
      this.opts.backoff = { type: raw.backoff.kind, delay: Number(raw.backoff.delay) };
      if (raw.backoff.jitter) this.opts.backoff.jitter = raw.backoff.jitter;
    }
  }

  /** Appends a line to the job's BullMQ log (`Queue.getJobLogs`). */
  async log(line) {
    addLog(String(line));
  }

  /** Sets the job's progress, a number or an object, and emits BullMQ's `progress` event. */
  async updateProgress(progress) {
    this.progress = progress;
    hostProgress(JSON.stringify(progress));
  }

  /** Replaces the job's data: what the next attempt sees. */
  async updateData(data) {
    hostUpdateData(JSON.stringify(data));
    this.data = data;
  }

  /** Moves the job to delayed until `timestamp` (ms since the epoch) once the processor throws `DelayedError`. */
  async moveToDelayed(timestamp) {
    asked.delayedUntil = timestamp;
  }

  /** True if the job has children not yet finished: throw `WaitingChildrenError` then. */
  async moveToWaitingChildren() {
    return hostMoveToWaitingChildren();
  }

  /** The return values of the children that completed, by child key. */
  async getChildrenValues() {
    return JSON.parse(readChildren().values);
  }

  /** The failed reasons of the children whose failure was ignored, by child key. */
  async getIgnoredChildrenFailures() {
    return JSON.parse(readChildren().ignored);
  }

  /** The keys of the children that failed (`failParentOnFailure` or `continueParentOnFailure`). */
  async getFailedChildrenKeys() {
    return JSON.parse(readChildren().failed);
  }
}

// BullMQ's names for the errors that end an attempt without failing it:
// it tells them apart by class or by name (or, for a rate limit, by message).
function jobError(error) {
  const name = error?.name;
  const message = error instanceof Error ? error.message : describe(error);
  if (message === 'bullmq:rateLimitExceeded') {
    return { tag: 'rate-limited', val: BigInt(Math.max(0, Math.ceil(asked.rateLimitMs ?? 0))) };
  }
  if (name === 'DelayedError') {
    if (asked.delayedUntil === undefined) {
      return failed('DelayedError thrown without job.moveToDelayed(timestamp) first: the job has no time to wait until', 'Error');
    }
    return { tag: 'delayed', val: BigInt(Math.max(0, Math.floor(Number(asked.delayedUntil)))) };
  }
  if (name === 'WaitingChildrenError') return { tag: 'waiting-children' };
  if (name === 'UnrecoverableError') return { tag: 'unrecoverable', val: message };
  return failed(message, error instanceof Error ? name : undefined);
}

function failed(message, name) {
  return { tag: 'failed', val: { message, name: typeof name === 'string' ? name : undefined } };
}

// What a thrown value that is not an Error says (BullMQ would write
// `undefined`; a reason is more use).
function describe(value) {
  if (typeof value === 'string') return value;
  try {
    return `non-Error thrown: ${JSON.stringify(value)}`;
  } catch {
    return `non-Error thrown: ${String(value)}`;
  }
}

/** Runs the bundled processor on one attempt: the `process` export's body. @private */
export async function __process(processor, raw) {
  const run = processor.process ?? processor.default;
  if (typeof run !== 'function') {
    throw { payload: { tag: 'unrecoverable', val: 'the processor module exports neither `process` nor a default function' } };
  }
  let value;
  environment = undefined;
  asked.rateLimitMs = undefined;
  asked.delayedUntil = undefined;
  try {
    current = new Job(raw);
    value = await run(current, `bullpen:${raw.id}`);
  } catch (error) {
    const payload = jobError(error);
    if (payload.tag === 'failed' || payload.tag === 'unrecoverable') {
      const stack = nodeStack(error);
      if (stack !== undefined) failureStack(stack);
    }
    throw { payload };
  }
  const text = JSON.stringify(value);
  return text === undefined ? 'null' : text;
}

/** Asks the bundled processor's `backoff` export, if any: the `backoff` export's body. @private */
export async function __backoff(processor, attemptsMade, strategy, failure, raw) {
  if (typeof processor.backoff !== 'function') return { tag: 'builtin' };
  environment = undefined;
  const error = new Error(failure.message);
  if (failure.name !== undefined) error.name = failure.name;
  let delay;
  try {
    delay = await processor.backoff(attemptsMade, strategy, error, new Job(raw));
  } catch (thrown) {
    hostLog('error', `backoff threw: ${thrown instanceof Error ? thrown.message : describe(thrown)}; giving up`);
    return { tag: 'give-up' };
  }
  // BullMQ: -1 means do not retry; a positive number is the wait; anything
  // else (0, undefined) retries at once.
  if (delay === -1) return { tag: 'give-up' };
  if (typeof delay === 'number' && delay > 0) return { tag: 'after', val: BigInt(Math.round(delay)) };
  return { tag: 'now' };
}
