// validate: completes jobs whose data has an `email`; fails any other at
// once, whatever attempts remain (retrying cannot fix the data).
import { UnrecoverableError } from 'bullpen';

export async function process(job) {
  if (!('email' in (job.data ?? {}))) {
    throw new UnrecoverableError('Invalid job data: "email" is required');
  }
  return { registered: job.data.email };
}
