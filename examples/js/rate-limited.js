// rate-limited: hits a rate limit on its first `times` starts, pausing the
// queue for `wait_ms` each time (the job goes back to wait, no attempt
// counted), then completes.
//
// Data: {"wait_ms": 1000, "times": 1} (the defaults).
import { RateLimitError, worker } from 'bullpen';

export async function process(job) {
  const { wait_ms = 1000, times = 1 } = job.data ?? {};
  if (job.attemptsStarted <= times) {
    await worker.rateLimit(wait_ms);
    throw new RateLimitError();
  }
  return { attempts_started: job.attemptsStarted };
}
