"""flaky: fails until attempt ``succeed_on``, then completes.

Data: {"succeed_on": 3, "error_name": "FlakyError"} (both optional; these
are the defaults). Attempt n (n = attemptsMade + 1) raises an exception
named ``error_name`` while n < succeed_on, then completes with
{"attempt": n}.
"""


async def process(job, token):
    plan = job.data or {}
    succeed_on = plan.get("succeed_on", 3)
    attempt = job.attemptsMade + 1
    await job.updateProgress(min(100, round(100 * attempt / succeed_on)))
    if attempt < succeed_on:
        error = type(plan.get("error_name", "FlakyError"), (Exception,), {})
        raise error(f"attempt {attempt} of {succeed_on} failed")
    await job.log(f"succeeded on attempt {attempt}")
    return {"attempt": attempt}
