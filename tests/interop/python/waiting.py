"""What the producer scripts share: waiting until a job has finished."""

import asyncio
import time


async def finished(queue, job_id, timeout=30):
    """The job's final state, completed or failed, once it has one."""
    deadline = time.monotonic() + timeout
    while True:
        state = await queue.getJobState(job_id)
        if state in ("completed", "failed"):
            return state
        if time.monotonic() > deadline:
            raise TimeoutError(f"{queue.name}/{job_id} still {state}")
        await asyncio.sleep(0.02)
