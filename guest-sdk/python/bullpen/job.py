"""The job a processor receives, and the services of the worker running it."""

from bullpen import _services


def log(level: str, message: str) -> None:
    """Writes a line to the host's log, tagged with the queue and job."""
    _services.current().log(level, str(message))


class _Worker:
    """bullpen's stand-in for the BullMQ ``Worker`` running the processor."""

    async def rate_limit(self, ms: int) -> None:
        """Pauses the queue for ``ms`` milliseconds once the processor raises ``RateLimitError``."""
        _services.current().rate_limit_ms = ms

    rateLimit = rate_limit


worker = _Worker()


class Job:
    """One attempt of a BullMQ job, with the attributes and methods of BullMQ's ``Job``."""

    def __init__(
        self,
        services,
        *,
        id: str,
        name: str,
        queue: str,
        data,
        attempts_made: int = 0,
        attempts_started: int = 1,
        timestamp: int = 0,
        opts: dict | None = None,
        prefix: str = "bull",
    ):
        self._services = services
        self.id = id
        self.name = name
        self.queueName = queue
        self.queueQualifiedName = f"{prefix}:{queue}"
        self.data = data
        self.attemptsMade = attempts_made
        self.attemptsStarted = attempts_started
        self.timestamp = timestamp
        self.progress = 0
        self.opts = dict(opts) if opts else {"attempts": 1}

    async def log(self, line: str) -> None:
        """Appends a line to the job's BullMQ log."""
        self._services.add_log(str(line))

    async def updateProgress(self, progress) -> None:
        """Sets the job's progress (a number or a dict) and emits BullMQ's ``progress`` event."""
        self.progress = progress
        self._services.progress(progress)

    async def updateData(self, data) -> None:
        """Replaces the job's data: what the next attempt sees."""
        self._services.update_data(data)
        self.data = data

    async def moveToDelayed(self, timestamp: int, token: str = "") -> None:
        """Moves the job to delayed until ``timestamp`` (ms since the epoch) once it raises ``DelayedError``."""
        self._services.delayed_until = timestamp

    async def moveToWaitingChildren(self, token: str = "", opts=None) -> bool:
        """True if the job has children not yet finished: raise ``WaitingChildrenError`` then."""
        return self._services.move_to_waiting_children()

    async def getChildrenValues(self) -> dict:
        """The return values of the children that completed, by child key."""
        return self._services.children_values()

    async def getIgnoredChildrenFailures(self) -> dict:
        """The failed reasons of the children whose failure was ignored, by child key."""
        return self._services.ignored_children_failures()

    # BullMQ's Python client spells these in snake case too.
    update_progress = updateProgress
    update_data = updateData
    move_to_delayed = moveToDelayed
    move_to_waiting_children = moveToWaitingChildren
    get_children_values = getChildrenValues
    get_ignored_children_failures = getIgnoredChildrenFailures


# The job being processed, the only one a processor may add children to.
_current: Job | None = None


class Queue:
    """BullMQ's ``Queue``, for adding jobs to the queues this one is granted (``add_to_queues``)."""

    def __init__(self, name: str, opts=None):
        self.name = name

    async def add(self, name: str, data, opts=None) -> str:
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
        return _services.current().add(self.name, str(name), data, opts, parent is not None)
