"""validate: completes jobs whose data has an ``email``; fails any other at
once, whatever attempts remain (retrying cannot fix the data)."""

from bullpen import UnrecoverableError


async def process(job, token):
    if "email" not in (job.data or {}):
        raise UnrecoverableError('Invalid job data: "email" is required')
    return {"registered": job.data["email"]}
