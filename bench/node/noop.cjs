// The sandboxed no-op processor: returns the job's data, as the echo guest does.
module.exports = async (job) => job.data;
