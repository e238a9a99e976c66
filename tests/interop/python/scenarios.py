"""BullMQ's Python client as the producer of a bullpen host's jobs.

    REDIS_URL=... python scenarios.py '[["queue", "name", {data}, {opts}], ...]'

Adds each job, waits until each has finished, and prints, as one JSON
object keyed by queue, what the Python client reads back of it.
"""

import asyncio
import json
import os
import sys

from bullmq import Job, Queue
from waiting import finished


async def main():
    opts = {"connection": os.environ["REDIS_URL"]}
    jobs = json.loads(sys.argv[1])
    queues = {name: Queue(name, opts) for name, *_ in jobs}
    added = []
    for name, job_name, data, job_opts in jobs:
        added.append((name, await queues[name].add(job_name, data, job_opts)))
    report = {}
    for name, job in added:
        queue = queues[name]
        state = await finished(queue, job.id)
        job = await Job.fromId(queue, job.id)
        logs = await queue.getJobLogs(job.id)
        report[name] = {
            "state": state,
            "returnvalue": job.returnvalue,
            "failedReason": job.failedReason,
            "stacktrace": job.stacktrace,
            "attemptsMade": job.attemptsMade,
            "attemptsStarted": job.attemptsStarted,
            "progress": job.progress,
            "logs": logs["logs"] if isinstance(logs, dict) else logs,
        }
    print(json.dumps(report))
    for queue in queues.values():
        await queue.close()


asyncio.run(main())
