"""How an attempt ended, in BullMQ's terms: what a processor's return value
or exception means. Shared by the component (which answers the host with
it) and ``bullpen.testing`` (which hands it to a test), so a unit test sees
the outcome bullpen would act on."""

import inspect
import traceback
from dataclasses import dataclass

from bullpen.errors import DelayedError, RateLimitError, UnrecoverableError, WaitingChildrenError


@dataclass
class Outcome:
    """An attempt's end. ``kind`` is one of ``completed`` (``value`` is the
    return value), ``failed`` (``reason``, ``name``: retried after backoff
    while attempts remain), ``unrecoverable`` (``reason``), ``rate-limited``
    (``delay``: ms the queue pauses), ``delayed`` (``delay``: the timestamp
    it waits until) or ``waiting-children``."""

    kind: str
    value: object = None
    reason: str | None = None
    name: str | None = None
    delay: int | None = None
    stacktrace: str | None = None


def settle(value):
    """The value of a coroutine whose awaits never suspend (the SDK's own
    methods answer at once): there is no event loop to wait on."""
    if not inspect.isawaitable(value):
        return value
    steps = value.__await__()
    try:
        while True:
            try:
                suspended = steps.send(None) is not None
            except RuntimeError as error:
                # asyncio's own words when it finds no loop running.
                suspended = "event loop" in str(error)
                if not suspended:
                    raise
            if suspended:
                raise RuntimeError(
                    "the processor awaited something that needs an event loop (such as asyncio.sleep); "
                    "a bullpen processor may await only the job's and the SDK's methods"
                ) from None
    except StopIteration as done:
        return done.value


def takes_token(function) -> bool:
    """Whether ``process`` takes BullMQ's second argument, the token."""
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 2 or any(p.kind == p.VAR_POSITIONAL for p in parameters)


def message(error: BaseException) -> str:
    """The failedReason of an exception."""
    # Some exceptions carry no text (``MemoryError()`` when the queue's
    # memory cap refuses an allocation): a failedReason still says why.
    if isinstance(error, MemoryError) and not str(error):
        return "out of memory"
    return str(error) or type(error).__name__


def _traceback(error: BaseException) -> str:
    """The traceback BullMQ Python records (``traceback.format_exc()``),
    from the processor's own frames on: the SDK's are left out."""
    frames = error.__traceback__
    while frames is not None and frames.tb_frame.f_code.co_filename.startswith(_SDK_DIR):
        frames = frames.tb_next
    return "".join(traceback.format_exception(type(error), error, frames))


_SDK_DIR = __file__.rsplit("/", 1)[0] + "/"


def of_error(error: BaseException, services, reason: str | None = None) -> Outcome:
    """What an exception raised by ``process`` does to the job; ``services``
    holds what the processor asked for before raising (a rate limit, a
    delay)."""
    name = type(error).__name__
    reason = message(error) if reason is None else reason
    if isinstance(error, RateLimitError) or reason == "bullmq:rateLimitExceeded":
        return Outcome("rate-limited", delay=max(0, int(services.rate_limit_ms or 0)))
    if isinstance(error, DelayedError) or name == "DelayedError":
        if services.delayed_until is None:
            return Outcome(
                "failed",
                reason="DelayedError raised without job.moveToDelayed(timestamp) first: the job has no time to wait until",
                name="Error",
            )
        return Outcome("delayed", delay=max(0, int(services.delayed_until)))
    if isinstance(error, WaitingChildrenError) or name == "WaitingChildrenError":
        return Outcome("waiting-children")
    if isinstance(error, UnrecoverableError) or name == "UnrecoverableError":
        return Outcome("unrecoverable", reason=reason, stacktrace=_traceback(error))
    return Outcome("failed", reason=reason, name=name, stacktrace=_traceback(error))


def run_process(processor, job, token: str, services, reason_of=None) -> Outcome:
    """Runs one attempt: ``processor``'s ``process`` (a module's or an
    object's, or the function itself) on ``job``."""
    run = processor if inspect.isfunction(processor) else getattr(processor, "process", None)
    if not callable(run):
        return Outcome("unrecoverable", reason="the processor module has no process(job) function")
    try:
        args = (job, token) if takes_token(run) else (job,)
        return Outcome("completed", value=settle(run(*args)))
    except Exception as error:  # every exception ends the attempt, as in BullMQ
        return of_error(error, services, reason_of(error) if reason_of else None)
