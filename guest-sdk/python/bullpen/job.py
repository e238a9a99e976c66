"""The job a processor receives, and the host's services, over the bullpen:processor imports."""

import json

from wit_world.imports import bullpen_processor_types as types
from wit_world.imports import host, jobs

# What the processor asked for before raising RateLimitError or DelayedError.
# One attempt per instance, so module state is the attempt's.
asked = {"rate_limit_ms": None, "delayed_until": None}
_current = None

_LEVELS = {
    "trace": host.Level.TRACE,
    "debug": host.Level.DEBUG,
    "info": host.Level.INFO,
    "warn": host.Level.WARN,
    "warning": host.Level.WARN,
    "error": host.Level.ERROR,
}


def log(level: str, message: str) -> None:
    """Writes a line to the host's log, tagged with the queue and job."""
    host.log(_LEVELS.get(level, host.Level.INFO), str(message))


class _Worker:
    """bullpen's stand-in for the BullMQ ``Worker`` running the processor."""

    async def rate_limit(self, ms: int) -> None:
        """Pauses the queue for ``ms`` milliseconds once the processor raises ``RateLimitError``."""
        asked["rate_limit_ms"] = ms

    rateLimit = rate_limit


worker = _Worker()


class Job:
    """One attempt of a BullMQ job, with the attributes and methods of BullMQ's ``Job``."""

    def __init__(self, raw: types.Job):
        self.id = raw.id
        self.name = raw.name
        self.queueName = raw.queue
        self.queueQualifiedName = f"bull:{raw.queue}"
        self.data = json.loads(raw.data)
        self.attemptsMade = raw.attempts_made
        self.attemptsStarted = raw.attempts_started
        self.timestamp = raw.timestamp
        self.progress = 0
        self.opts = {"attempts": raw.max_attempts}
        if raw.backoff is not None:
            self.opts["backoff"] = {"type": raw.backoff.kind, "delay": raw.backoff.delay}
            if raw.backoff.jitter:
                self.opts["backoff"]["jitter"] = raw.backoff.jitter

    async def log(self, line: str) -> None:
        """Appends a line to the job's BullMQ log."""
        host.add_log(str(line))

    async def updateProgress(self, progress) -> None:
        """Sets the job's progress (a number or a dict) and emits BullMQ's ``progress`` event."""
        self.progress = progress
        host.progress(json.dumps(progress))

    async def updateData(self, data) -> None:
        """Replaces the job's data: what the next attempt sees."""
        jobs.update_data(json.dumps(data))
        self.data = data

    async def moveToDelayed(self, timestamp: int, token: str = "") -> None:
        """Moves the job to delayed until ``timestamp`` (ms since the epoch) once it raises ``DelayedError``."""
        asked["delayed_until"] = timestamp

    async def moveToWaitingChildren(self, token: str = "", opts=None) -> bool:
        """True if the job has children not yet finished: raise ``WaitingChildrenError`` then."""
        return jobs.move_to_waiting_children()

    async def getChildrenValues(self) -> dict:
        """The return values of the children that completed, by child key."""
        return json.loads(jobs.read_children().values)

    async def getIgnoredChildrenFailures(self) -> dict:
        """The failed reasons of the children whose failure was ignored, by child key."""
        return json.loads(jobs.read_children().ignored)

    # BullMQ's Python client spells these in snake case too.
    update_progress = updateProgress
    update_data = updateData
    move_to_delayed = moveToDelayed
    move_to_waiting_children = moveToWaitingChildren
    get_children_values = getChildrenValues


class Queue:
    """BullMQ's ``Queue``, for adding jobs to the queues this one is granted (``add_to_queues``)."""

    def __init__(self, name: str, opts=None):
        self.name = name

    async def add(self, name: str, data, opts=None):
        """BullMQ's ``queue.add(name, data, opts)``; ``opts["parent"]`` may name only the job being processed."""
        opts = dict(opts or {})
        parent = opts.pop("parent", None)
        if parent is not None and _current is not None:
            same = str(parent.get("id")) == _current.id and parent.get("queue") in (
                _current.queueQualifiedName,
                _current.queueName,
            )
            if not same:
                raise ValueError(
                    f"a processor can add children only to the job it runs ({_current.queueName}:{_current.id})"
                )
        return jobs.add(
            types.NewJob(
                queue=self.name,
                name=str(name),
                data=json.dumps(data),
                options=json.dumps(opts),
                child=parent is not None,
            )
        )
