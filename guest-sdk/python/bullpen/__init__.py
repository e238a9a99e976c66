"""Write bullpen job processors in Python, in BullMQ's vocabulary.

A processor is a module with a ``process(job, token)`` function, sync or
``async``, and optionally ``backoff(attempts_made, type, err, job)`` (BullMQ's
``settings.backoffStrategy``). ``bullpen build processor.py``
turns it into a component that bullpen runs in a fresh sandbox per attempt.

What ``process`` does decides the job's fate, as in BullMQ::

    return value                  completes; value (JSON) is the returnvalue
    raise any exception           fails the attempt; retried after backoff
    raise UnrecoverableError      fails now, whatever attempts remain
    await worker.rate_limit(ms)   pauses the queue for ms, job back to wait,
      then raise RateLimitError     no attempt counted
    await job.moveToDelayed(ts)   waits in delayed until ts (ms since the
      then raise DelayedError       epoch), no attempt counted
    if await job.moveToWaitingChildren():
      raise WaitingChildrenError  runs again once its children finished
"""

from bullpen.errors import DelayedError, RateLimitError, UnrecoverableError, WaitingChildrenError
from bullpen.job import Job, Queue, log, worker

__all__ = [
    "DelayedError",
    "Job",
    "Queue",
    "RateLimitError",
    "UnrecoverableError",
    "WaitingChildrenError",
    "log",
    "worker",
]
