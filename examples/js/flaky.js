// flaky: fails until attempt `succeed_on`, then completes.
//
// Data: {"succeed_on": 3, "error_name": "FlakyError"} (both optional; these
// are the defaults). Attempt n (n = attemptsMade + 1) throws an error named
// `error_name` while n < succeed_on, then completes with {"attempt": n}.
export async function process(job) {
  const { succeed_on = 3, error_name = 'FlakyError' } = job.data ?? {};
  const attempt = job.attemptsMade + 1;
  await job.updateProgress(Math.min(100, Math.round((100 * attempt) / succeed_on)));
  if (attempt < succeed_on) {
    const error = new Error(`attempt ${attempt} of ${succeed_on} failed`);
    error.name = error_name;
    throw error;
  }
  await job.log(`succeeded on attempt ${attempt}`);
  return { attempt };
}
