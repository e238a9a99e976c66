"""The exports of the processor world over a processor module: what
``bullpen build`` puts around ``process`` and ``backoff``."""

import inspect
import json
import traceback

import wit_world
from componentize_py_types import Err
from wit_world.imports import bullpen_processor_types as types
from wit_world.imports import host

from bullpen import job as _job
from bullpen.errors import DelayedError, RateLimitError, UnrecoverableError, WaitingChildrenError


def _settle(value):
    """The value of a coroutine whose awaits never suspend (the SDK's own
    methods answer at once): there is no event loop to wait on."""
    if not inspect.isawaitable(value):
        return value
    steps = value.__await__()
    try:
        while True:
            if steps.send(None) is not None:
                raise RuntimeError(
                    "the processor awaited something that needs an event loop (such as asyncio.sleep); "
                    "a bullpen processor may await only the job's and the SDK's methods"
                )
    except StopIteration as done:
        return done.value


def _message(error: BaseException) -> str:
    if isinstance(error, Err):
        return str(error.value)
    # Some exceptions carry no text (``MemoryError()`` when the queue's
    # memory cap refuses an allocation): a failedReason still says why.
    if isinstance(error, MemoryError) and not str(error):
        return "out of memory"
    return str(error) or type(error).__name__


def _job_error(error: BaseException) -> types.JobError:
    name = type(error).__name__
    message = _message(error)
    if isinstance(error, RateLimitError) or message == "bullmq:rateLimitExceeded":
        return types.JobError_RateLimited(max(0, int(_job.asked["rate_limit_ms"] or 0)))
    if isinstance(error, DelayedError) or name == "DelayedError":
        until = _job.asked["delayed_until"]
        if until is None:
            return types.JobError_Failed(
                types.Failure(
                    "DelayedError raised without job.moveToDelayed(timestamp) first: the job has no time to wait until",
                    "Error",
                )
            )
        return types.JobError_Delayed(max(0, int(until)))
    if isinstance(error, WaitingChildrenError) or name == "WaitingChildrenError":
        return types.JobError_WaitingChildren()
    if isinstance(error, UnrecoverableError) or name == "UnrecoverableError":
        return types.JobError_Unrecoverable(message)
    return types.JobError_Failed(types.Failure(message, name))


def _traceback(error: BaseException) -> str:
    """The traceback BullMQ Python records (``traceback.format_exc()``),
    from the processor's own frames on: this module's are left out."""
    frames = error.__traceback__
    while frames is not None and frames.tb_frame.f_code.co_filename == __file__:
        frames = frames.tb_next
    return "".join(traceback.format_exception(type(error), error, frames))


def _takes_token(function) -> bool:
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 2 or any(p.kind == p.VAR_POSITIONAL for p in parameters)


def world(processor):
    """The ``WitWorld`` class for a processor module."""

    class WitWorld(wit_world.WitWorld):
        def process(self, job: types.Job) -> str:
            run = getattr(processor, "process", None)
            if not callable(run):
                raise Err(types.JobError_Unrecoverable("the processor module has no process(job) function"))
            # Forgotten when each attempt starts: a reused instance
            # (max_instance_reuse_count) runs several.
            _job.asked.update(rate_limit_ms=None, delayed_until=None)
            try:
                current = _job.Job(job)
                _job._current = current
                args = (current, f"bullpen:{job.id}") if _takes_token(run) else (current,)
                value = _settle(run(*args))
            except Exception as error:  # every exception ends the attempt, as in BullMQ
                outcome = _job_error(error)
                if isinstance(outcome, (types.JobError_Failed, types.JobError_Unrecoverable)):
                    host.failure_stack(_traceback(error))
                raise Err(outcome) from None
            return json.dumps(value)

        def backoff(self, attempts_made, strategy, error, job):
            custom = getattr(processor, "backoff", None)
            if not callable(custom):
                return types.BackoffDecision_Builtin()
            # BullMQ passes the error itself: here an exception of its name.
            kind = error.name if error.name and error.name.isidentifier() else "Exception"
            failure = type(kind, (Exception,), {})(error.message)
            try:
                delay = _settle(custom(attempts_made, strategy, failure, _job.Job(job)))
            except Exception:
                _job.log("error", "backoff raised; giving up:\n" + traceback.format_exc())
                return types.BackoffDecision_GiveUp()
            if delay == -1:
                return types.BackoffDecision_GiveUp()
            if isinstance(delay, (int, float)) and delay > 0:
                return types.BackoffDecision_After(int(round(delay)))
            return types.BackoffDecision_Now()

    return WitWorld
