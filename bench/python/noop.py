"""The no-op processor, in Python: returns the job's data, as the echo
guest does (built by bullpen build for bullpen)."""


def process(job):
    return job.data
