"""BullMQ's error classes: what a processor raises to say how its attempt ended."""


class UnrecoverableError(Exception):
    """The job fails now, whatever attempts remain."""

    def __init__(self, message: str = "bullmq:unrecoverable"):
        super().__init__(message)


class RateLimitError(Exception):
    """The queue is rate limited (after ``worker.rate_limit(ms)``): the job goes back to wait."""

    def __init__(self, message: str = "bullmq:rateLimitExceeded"):
        super().__init__(message)


class DelayedError(Exception):
    """The job was moved to delayed (after ``job.moveToDelayed(timestamp)``)."""

    def __init__(self, message: str = "bullmq:movedToDelayed"):
        super().__init__(message)


class WaitingChildrenError(Exception):
    """The job waits for its children (after ``job.moveToWaitingChildren()`` said True)."""

    def __init__(self, message: str = "bullmq:movedToWaitingChildren"):
        super().__init__(message)
