"""BullMQ's Python client as producer, observer and retrier of a bullpen host.

Adds jobs, waits for them, retries finished ones by hand with each reset
option, and prints, as one JSON object, what the Python client reads back.

    REDIS_URL=redis://127.0.0.1:6390 python producer.py
"""

import asyncio
import json
import os
import time

from bullmq import Job, Queue
from waiting import finished


async def read(queue, job_id):
    state = await finished(queue, job_id)
    job = await Job.fromId(queue, job_id)
    logs = await queue.getJobLogs(job_id)
    return {
        "id": job.id,
        "progress": job.progress,
        "logs": logs["logs"] if isinstance(logs, dict) else logs,
        "state": state,
        "returnvalue": job.returnvalue,
        "returnvalueType": type(job.returnvalue).__name__,
        "failedReason": job.failedReason,
        "stacktrace": job.stacktrace,
        "attemptsMade": job.attemptsMade,
        "attemptsStarted": job.attemptsStarted,
    }


async def main():
    opts = {"connection": os.environ["REDIS_URL"]}
    echo = Queue("echo", opts)
    flaky = Queue("flaky", opts)
    report = {}

    job = await echo.add("py", {"hello": "python"}, {"attempts": 2})
    echo_id = job.id
    report["echo"] = await read(echo, echo_id)

    job = await flaky.add(
        "retried",
        {"succeed_on": 2, "error_name": "PyError"},
        {"attempts": 3, "backoff": {"type": "exponential", "delay": 50}},
    )
    report["retried"] = await read(flaky, job.id)

    job = await flaky.add("exhausted", {"succeed_on": 9}, {"attempts": 2, "backoff": 20})
    exhausted_id = job.id
    report["exhausted"] = await read(flaky, exhausted_id)

    signups = Queue("signups", opts)
    job = await signups.add("py", {"email": "ada@example.com", "name": "Ada"})
    report["logged"] = await read(signups, job.id)
    misbehave = Queue("misbehave", opts)
    job = await misbehave.add("py", {"mode": "bad-progress"})
    report["progress"] = await read(misbehave, job.id)
    await signups.close()
    await misbehave.close()

    # Manual retries: a completed job without resets, then with both.
    completed = await Job.fromId(echo, echo_id)
    await completed.retry("completed")
    report["retry-plain"] = await read_after_retry(echo, completed.id, 2)
    completed = await Job.fromId(echo, completed.id)
    await completed.retry("completed", {"resetAttemptsMade": True, "resetAttemptsStarted": True})
    report["retry-reset-both"] = await read_after_retry(echo, completed.id, 1)

    # A failed job, attemptsMade reset only: it gets its attempts again.
    failed = await Job.fromId(flaky, exhausted_id)
    await failed.retry("failed", {"resetAttemptsMade": True})
    report["retry-failed-reset-made"] = await read_after_retry(flaky, failed.id, 4)

    # The error cases: a job that does not exist, and one not in that state.
    errors = {}
    for name, job_id, state in (("missing", "no-such-job", "failed"), ("wrong-state", completed.id, "failed")):
        try:
            target = Job(echo, "x", {}, {}, job_id)
            await target.retry(state)
            errors[name] = None
        except Exception as e:  # noqa: BLE001 - the message is what we report
            errors[name] = str(e)
    report["retry-errors"] = errors

    print(json.dumps(report))
    await echo.close()
    await flaky.close()


async def read_after_retry(queue, job_id, attempts_started, timeout=30):
    """Waits until the retried job has finished its next attempt."""
    deadline = time.monotonic() + timeout
    while True:
        job = await Job.fromId(queue, job_id)
        state = await queue.getJobState(job_id)
        if state in ("completed", "failed") and job.attemptsStarted >= attempts_started:
            return await read(queue, job_id)
        if time.monotonic() > deadline:
            raise TimeoutError(f"{queue.name}/{job_id} still {state}, {job.attemptsStarted} starts")
        await asyncio.sleep(0.02)


asyncio.run(main())
