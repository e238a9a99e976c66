"""The exports of the processor world over a processor module: what
``bullpen build`` puts around ``process`` and ``backoff``."""

import json
import traceback

import wit_world
from componentize_py_types import Err
from wit_world.imports import bullpen_processor_types as types
from wit_world.imports import host, jobs

from bullpen import _outcome, _services
from bullpen import job as _jobs
from bullpen._component import ComponentServices


def _reason(error: BaseException):
    # An import's error (componentize-py's ``Err``) carries the host's words.
    return str(error.value) if isinstance(error, Err) else None


# The queue's key prefix ([redis] prefix), asked once: it is the queue's.
_prefix = None


def _make_job(raw: types.Job, services) -> _jobs.Job:
    global _prefix
    if _prefix is None:
        _prefix = jobs.queue_prefix()
    opts = {"attempts": raw.max_attempts}
    if raw.backoff is not None:
        opts["backoff"] = {"type": raw.backoff.kind, "delay": raw.backoff.delay}
        if raw.backoff.jitter:
            opts["backoff"]["jitter"] = raw.backoff.jitter
    return _jobs.Job(
        services,
        id=raw.id,
        name=raw.name,
        queue=raw.queue,
        data=json.loads(raw.data),
        attempts_made=raw.attempts_made,
        attempts_started=raw.attempts_started,
        timestamp=raw.timestamp,
        opts=opts,
        prefix=_prefix,
    )


def _answer(outcome: _outcome.Outcome):
    """The WIT result of an attempt's outcome."""
    if outcome.kind == "completed":
        return json.dumps(outcome.value)
    if outcome.stacktrace:
        host.failure_stack(outcome.stacktrace)
    if outcome.kind == "rate-limited":
        raise Err(types.JobError_RateLimited(outcome.delay))
    if outcome.kind == "delayed":
        raise Err(types.JobError_Delayed(outcome.delay))
    if outcome.kind == "waiting-children":
        raise Err(types.JobError_WaitingChildren())
    if outcome.kind == "unrecoverable":
        raise Err(types.JobError_Unrecoverable(outcome.reason))
    raise Err(types.JobError_Failed(types.Failure(outcome.reason, outcome.name)))


def world(processor):
    """The ``WitWorld`` class for a processor module."""
    services = ComponentServices()
    _services.active = services

    class WitWorld(wit_world.WitWorld):
        def process(self, job: types.Job) -> str:
            services.start_attempt()
            try:
                current = _make_job(job, services)
            except Exception as error:
                return _answer(_outcome.of_error(error, services, _reason(error)))
            _jobs._current = current
            return _answer(_outcome.run_process(processor, current, f"bullpen:{job.id}", services, _reason))

        def backoff(self, attempts_made, strategy, error, job):
            custom = getattr(processor, "backoff", None)
            if not callable(custom):
                return types.BackoffDecision_Builtin()
            # BullMQ passes the error itself: here an exception of its name.
            kind = error.name if error.name and error.name.isidentifier() else "Exception"
            failure = type(kind, (Exception,), {})(error.message)
            try:
                delay = _outcome.settle(custom(attempts_made, strategy, failure, _make_job(job, services)))
            except Exception:
                services.log("error", "backoff raised; giving up:\n" + traceback.format_exc())
                return types.BackoffDecision_GiveUp()
            if delay == -1:
                return types.BackoffDecision_GiveUp()
            if isinstance(delay, (int, float)) and delay > 0:
                return types.BackoffDecision_After(int(round(delay)))
            return types.BackoffDecision_Now()

    return WitWorld
