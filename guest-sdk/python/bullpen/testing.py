"""Jobs for a processor's own tests, without Redis or a component: the job
bullpen gives ``process``, with what the processor did kept for the test to
read, and ``run``, which says what bullpen would do with the job.

    from bullpen.testing import run, test_job
    import processor

    def test_total():
        job = test_job({"items": [{"price": 2, "quantity": 3}]})
        assert run(processor, job).value == {"total": 6}
        assert job.logs == ["1 item"]
"""

import time

from bullpen import _outcome, _services
from bullpen import job as _jobs
from bullpen._outcome import Outcome

__all__ = ["Outcome", "TestJob", "run", "test_job"]


class _Record:
    """The services of a test job: what the processor asked for, kept."""

    def __init__(self, children: dict):
        self.children = children
        self.logs = []
        self.host_log = []
        self.added = []
        self.delayed_until = None
        self.rate_limit_ms = None

    def log(self, level: str, message: str) -> None:
        self.host_log.append((level, message))

    def add_log(self, line: str) -> None:
        self.logs.append(line)

    def progress(self, value) -> None:
        pass

    def update_data(self, data) -> None:
        pass

    def move_to_waiting_children(self) -> bool:
        return bool(self.children.get("pending"))

    def children_values(self) -> dict:
        return dict(self.children.get("values", {}))

    def ignored_children_failures(self) -> dict:
        return dict(self.children.get("ignored", {}))

    def add(self, queue: str, name: str, data, opts: dict, child: bool) -> str:
        self.added.append({"queue": queue, "name": name, "data": data, "opts": opts, "child": child})
        return str(len(self.added))


class TestJob(_jobs.Job):
    """A job with BullMQ's attributes and methods whose effects are kept:
    ``logs`` (``job.log`` lines), ``progress``, ``data`` (after
    ``update_data``), ``delayed_until`` (``move_to_delayed``),
    ``rate_limit_ms`` (``worker.rate_limit``), ``added`` (what
    ``Queue(...).add`` added: dicts of ``queue``, ``name``, ``data``,
    ``opts``, ``child``) and ``host_log`` (``bullpen.log``'s ``(level,
    message)`` pairs)."""

    __test__ = False  # not a pytest test class, whatever its name

    @property
    def logs(self) -> list:
        return self._services.logs

    @property
    def host_log(self) -> list:
        return self._services.host_log

    @property
    def added(self) -> list:
        return self._services.added

    @property
    def delayed_until(self):
        return self._services.delayed_until

    @property
    def rate_limit_ms(self):
        return self._services.rate_limit_ms


def test_job(data=None, *, children: dict | None = None, **fields) -> TestJob:
    """A job with ``data`` and any of BullMQ's fields (``id``, ``name``,
    ``queue``, ``attempts_made``, ``attempts_started``, ``timestamp``,
    ``opts``). ``children``: ``pending`` (what ``move_to_waiting_children``
    answers), ``values`` and ``ignored`` (by child key). ``bullpen.log``,
    ``worker`` and ``Queue`` act on the newest test job."""
    record = _Record(children or {})
    fields.setdefault("id", "1")
    fields.setdefault("name", "test")
    fields.setdefault("queue", "test")
    fields.setdefault("timestamp", int(time.time() * 1000))
    job = TestJob(record, data=data, **fields)
    _services.active = record
    _jobs._current = job
    return job


test_job.__test__ = False


def run(processor, job: TestJob) -> Outcome:
    """Runs ``processor`` (a module with ``process``, or the function) on
    ``job`` as bullpen runs an attempt, and returns how it ended: its
    ``kind`` is ``completed`` (``value``), ``failed`` (``reason``,
    ``name``), ``unrecoverable`` (``reason``), ``rate-limited``
    (``delay``), ``delayed`` (``delay``) or ``waiting-children``. Awaiting
    anything that needs an event loop fails the attempt, as it does in
    bullpen."""
    _services.active = job._services
    _jobs._current = job
    return _outcome.run_process(processor, job, f"bullpen:{job.id}", job._services)


run.__test__ = False
