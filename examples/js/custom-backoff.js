// custom-backoff: a processor with its own backoff strategy (BullMQ's
// settings.backoffStrategy), for jobs whose backoff type is not fixed or
// exponential.
//
// Data: {"errors": ["Transient", "RetryNow", "Fatal"]}. Attempt n throws an
// error named errors[n-1]; once the list is used up the job completes with
// {"attempt": n}.
import { UnrecoverableError } from 'bullpen';

export async function process(job) {
  const { errors = [] } = job.data ?? {};
  const attempt = job.attemptsMade + 1;
  const name = errors[job.attemptsMade];
  if (name === 'Unrecoverable') {
    throw new UnrecoverableError(`attempt ${attempt} cannot be retried`);
  }
  if (name !== undefined) {
    const error = new Error(`attempt ${attempt} failed with ${name}`);
    error.name = name;
    throw error;
  }
  return { attempt };
}

// RetryNow: retry at once (0). Fatal: give up (-1). Otherwise, with backoff
// type `linear`: attemptsMade × the job's backoff delay (1000 ms when
// unset); any other type: the job's delay.
export function backoff(attemptsMade, type, err, job) {
  if (err.name === 'RetryNow') return 0;
  if (err.name === 'Fatal') return -1;
  const base = job.opts.backoff?.delay || 1000;
  return type === 'linear' ? base * attemptsMade : base;
}
