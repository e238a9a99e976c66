// The no-op processor, in JavaScript: returns the job's data, as the echo
// guest does. The same file runs in BullMQ's sandboxed processors (child
// processes, worker threads: they import its default export) and, built by
// bullpen build, in bullpen.
export default async function process(job) {
  return job.data;
}
