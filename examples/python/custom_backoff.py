"""custom_backoff: a processor with its own backoff strategy (BullMQ's
``settings.backoffStrategy``), for jobs whose backoff type is not fixed or
exponential.

Data: {"errors": ["Transient", "RetryNow", "Fatal"]}. Attempt n raises an
exception named errors[n-1]; once the list is used up the job completes
with {"attempt": n}.
"""

from bullpen import UnrecoverableError


async def process(job, token):
    errors = (job.data or {}).get("errors", [])
    attempt = job.attemptsMade + 1
    if job.attemptsMade < len(errors):
        name = errors[job.attemptsMade]
        if name == "Unrecoverable":
            raise UnrecoverableError(f"attempt {attempt} cannot be retried")
        raise type(name, (Exception,), {})(f"attempt {attempt} failed with {name}")
    return {"attempt": attempt}


def backoff(attempts_made, backoff_type, err, job):
    """RetryNow: retry at once (0). Fatal: give up (-1). Otherwise, with
    type ``linear``: attempts_made × the job's backoff delay (1000 ms when
    unset); any other type: the job's delay."""
    name = type(err).__name__
    if name == "RetryNow":
        return 0
    if name == "Fatal":
        return -1
    base = (job.opts.get("backoff") or {}).get("delay") or 1000
    return base * attempts_made if backoff_type == "linear" else base
