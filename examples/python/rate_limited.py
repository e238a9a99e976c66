"""rate_limited: hits a rate limit on its first ``times`` starts, pausing the
queue for ``wait_ms`` each time (the job goes back to wait, no attempt
counted), then completes.

Data: {"wait_ms": 1000, "times": 1} (the defaults).
"""

from bullpen import RateLimitError, worker


async def process(job, token):
    plan = job.data or {}
    if job.attemptsStarted <= plan.get("times", 1):
        await worker.rate_limit(plan.get("wait_ms", 1000))
        raise RateLimitError()
    return {"attempts_started": job.attemptsStarted}
