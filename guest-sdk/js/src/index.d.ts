// The `bullpen` package's types: the same names inside bullpen (src/guest.js)
// and in Node (src/node.js), in BullMQ's vocabulary.

/** A job's backoff, as BullMQ's `opts.backoff` gives it. */
export interface BackoffOptions {
  type: string;
  delay: number;
  jitter?: number;
}

/**
 * One attempt of a BullMQ job: the fields and methods of BullMQ's `Job` a
 * processor uses. `Result` is what the processor returns (BullMQ's
 * `Job<Data, Result>`).
 */
export interface Job<Data = unknown, Result = unknown> {
  readonly id: string;
  readonly name: string;
  readonly queueName: string;
  /** `<prefix>:<queue>`: how a child's `opts.parent.queue` names this job's queue. */
  readonly queueQualifiedName: string;
  data: Data;
  readonly attemptsMade: number;
  readonly attemptsStarted: number;
  readonly timestamp: number;
  progress: number | object;
  readonly opts: { attempts?: number; backoff?: BackoffOptions };
  /** Appends a line to the job's BullMQ log (`Queue.getJobLogs`). */
  log(line: string): Promise<void>;
  /** Sets the job's progress and emits BullMQ's `progress` event. */
  updateProgress(progress: number | object): Promise<void>;
  /** Replaces the job's data: what the next attempt sees. */
  updateData(data: Data): Promise<void>;
  /** Moves the job to delayed until `timestamp` (ms since the epoch) once the processor throws `DelayedError`. */
  moveToDelayed(timestamp: number, token?: string): Promise<void>;
  /** True if the job has unfinished children: throw `WaitingChildrenError` then. */
  moveToWaitingChildren(token?: string): Promise<boolean>;
  /** The return values of the children that completed, by child key. */
  getChildrenValues<T = unknown>(): Promise<Record<string, T>>;
  /** The failed reasons of the children whose failure was ignored, by child key. */
  getIgnoredChildrenFailures(): Promise<Record<string, string>>;
  /** The keys of the children that failed. */
  getFailedChildrenKeys(): Promise<string[]>;
}

/** What a processor module exports as `process` (or as its default export). */
export type Processor<Data = unknown, Result = unknown> = (
  job: Job<Data, Result>,
  token?: string,
) => Promise<Result> | Result;

/** What a processor may export as `backoff`, like BullMQ's `settings.backoffStrategy`: ms to wait, 0 for now, -1 to give up. */
export type BackoffStrategy = (
  attemptsMade: number,
  type: string,
  err: Error,
  job: Job,
) => number | undefined | Promise<number | undefined>;

/** Fails the job now, whatever attempts remain. */
export class UnrecoverableError extends Error {}
/** Gives the job back after `worker.rateLimit(ms)`: no attempt counted. */
export class RateLimitError extends Error {}
/** Delays the job after `job.moveToDelayed(timestamp)`: no attempt counted. */
export class DelayedError extends Error {}
/** Lets the job wait for its children after `job.moveToWaitingChildren()`. */
export class WaitingChildrenError extends Error {}

/** The worker running the processor. */
export const worker: {
  /** Pauses the queue for `ms` milliseconds once the processor throws `RateLimitError`. */
  rateLimit(ms: number): Promise<void>;
};

/** BullMQ's `Worker.RateLimitError()`. */
export const Worker: { RateLimitError(): RateLimitError };

/** A job as `Queue.add` returns it. */
export interface AddedJob<Data = unknown> {
  id: string;
  name: string;
  data: Data;
  queueName: string;
}

/** Options of `Queue.add`: BullMQ's `JobsOptions`; `parent` may name only the job being processed. */
export interface AddOptions {
  jobId?: string;
  delay?: number;
  priority?: number;
  attempts?: number;
  backoff?: number | BackoffOptions;
  removeOnComplete?: boolean | number | object;
  removeOnFail?: boolean | number | object;
  parent?: { id: string; queue: string };
  [option: string]: unknown;
}

/** BullMQ's `Queue`, for adding jobs to the queues the processor's queue grants (`add_to_queues`). */
export class Queue {
  constructor(name: string);
  readonly name: string;
  add<Data = unknown>(name: string, data: Data, opts?: AddOptions): Promise<AddedJob<Data>>;
}

/** A line in the host's log (in Node: the console). */
export function log(level: 'trace' | 'debug' | 'info' | 'warn' | 'error', message: string): void;

/** In Node only: the BullMQ `Worker` that `worker.rateLimit` forwards to and whose connection `Queue` uses. */
export function useWorker(bullmqWorker: {
  rateLimit(ms: number): Promise<void>;
  opts?: { connection?: unknown; prefix?: string };
}): void;
