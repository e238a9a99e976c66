"""The SDK's services over the bullpen:processor imports of a component:
imported only inside one (``wit_world`` exists nowhere else)."""

import json

from wit_world.imports import bullpen_processor_types as types
from wit_world.imports import host, jobs

_LEVELS = {
    "trace": host.Level.TRACE,
    "debug": host.Level.DEBUG,
    "info": host.Level.INFO,
    "warn": host.Level.WARN,
    "warning": host.Level.WARN,
    "error": host.Level.ERROR,
}


class ComponentServices:
    """One instance per component: an instance runs one attempt at a time."""

    def __init__(self):
        self.rate_limit_ms = None
        self.delayed_until = None

    def start_attempt(self):
        """Forgets what an earlier attempt asked: a reused instance
        (``max_instance_reuse_count``) runs several."""
        self.rate_limit_ms = None
        self.delayed_until = None

    def log(self, level: str, message: str) -> None:
        host.log(_LEVELS.get(level, host.Level.INFO), message)

    def add_log(self, line: str) -> None:
        host.add_log(line)

    def progress(self, value) -> None:
        host.progress(json.dumps(value))

    def update_data(self, data) -> None:
        jobs.update_data(json.dumps(data))

    def move_to_waiting_children(self) -> bool:
        return jobs.move_to_waiting_children()

    def children_values(self) -> dict:
        return json.loads(jobs.read_children().values)

    def ignored_children_failures(self) -> dict:
        return json.loads(jobs.read_children().ignored)

    def add(self, queue: str, name: str, data, opts: dict, child: bool) -> str:
        return jobs.add(
            types.NewJob(
                queue=queue,
                name=name,
                data=json.dumps(data),
                options=json.dumps(opts),
                child=child,
            )
        )
