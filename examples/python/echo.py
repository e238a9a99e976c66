"""echo: completes every job with its data, unchanged."""


async def process(job, token):
    return job.data
