// echo: completes every job with its data, unchanged.
export async function process(job) {
  return job.data;
}
