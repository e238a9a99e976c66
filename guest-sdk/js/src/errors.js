// BullMQ's error classes, by the names and default messages BullMQ gives
// them: what a processor throws to say how its attempt ended.

/** The job fails now, whatever attempts remain. */
export class UnrecoverableError extends Error {
  constructor(message = 'bullmq:unrecoverable') {
    super(message);
    this.name = 'UnrecoverableError';
  }
}

/** The queue is rate limited (after `rateLimit(ms)`): the job goes back to wait, no attempt counted. */
export class RateLimitError extends Error {
  constructor(message = 'bullmq:rateLimitExceeded') {
    super(message);
    this.name = 'RateLimitError';
  }
}

/** The job was moved to delayed (after `job.moveToDelayed(timestamp)`): no attempt counted. */
export class DelayedError extends Error {
  constructor(message = 'bullmq:movedToDelayed') {
    super(message);
    this.name = 'DelayedError';
  }
}

/** The job waits for its children (after `job.moveToWaitingChildren()` said true). */
export class WaitingChildrenError extends Error {
  constructor(message = 'bullmq:movedToWaitingChildren') {
    super(message);
    this.name = 'WaitingChildrenError';
  }
}
