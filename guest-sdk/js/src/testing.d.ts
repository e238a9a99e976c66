import type { Job } from './index.js';

/** A job made by `testJob`: what the processor did to it, for the test to read. */
export interface TestJob<Data = unknown, Result = unknown> extends Job<Data, Result> {
  /** The lines the processor logged, in order. */
  readonly logs: string[];
  /** The timestamp the processor gave `moveToDelayed`, if it did. */
  readonly delayedUntil: number | undefined;
}

/** What a test job's children hold. */
export interface TestChildren {
  /** Whether `moveToWaitingChildren` finds children still to finish. */
  pending?: boolean;
  values?: Record<string, unknown>;
  ignored?: Record<string, string>;
  failed?: string[];
}

/** A job with `data` (and any of BullMQ's job fields) for calling a processor directly, without Redis. */
export function testJob<Data = unknown, Result = unknown>(
  data: Data,
  fields?: Partial<Omit<Job<Data, Result>, 'data'>> & {
    children?: TestChildren;
    /** The queue's key prefix (`[redis] prefix`), for `queueQualifiedName`: `bull` unless given. */
    prefix?: string;
  },
): TestJob<Data, Result>;
