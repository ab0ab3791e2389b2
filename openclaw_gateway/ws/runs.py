"""Runs started over WebSocket in this process: idempotency keys, ``agent.wait``, ``chat.abort``."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from gevent.event import Event

from ..agent.types import CancelToken

if TYPE_CHECKING:
    from .connection import Connection

# Finished runs remembered for idempotent retries and agent.wait.
KEEP_FINISHED = 2000


@dataclass(eq=False)
class Run:
    run_id: str
    method: str  # "agent" | "chat.send"
    session_key: str
    owner: Connection
    started_at: int
    idempotency_key: str
    cancel: CancelToken = field(default_factory=CancelToken)
    done: Event = field(default_factory=Event)
    status: str = "running"  # running | ok | error | aborted | timeout
    ended_at: int | None = None
    error: str | None = None
    text: str = ""
    agent_id: str = ""
    stop_reason: str = "stop"
    watchers: set[Connection] = field(default_factory=set)

    def finish(self, status: str, ended_at: int, error: str | None = None) -> None:
        self.status, self.ended_at, self.error = status, ended_at, error
        self.done.set()


class RunRegistry:
    """Per process; greenlet-confined. Across workers, a key is only deduplicated per worker."""

    def __init__(self, keep: int = KEEP_FINISHED) -> None:
        self._by_id: OrderedDict[str, Run] = OrderedDict()
        self._by_key: dict[tuple[str, str], Run] = {}
        self._keep = keep
        # agent.wait callers for a run id not started yet, woken by ``add``.
        self._awaited: dict[str, list[Event]] = {}

    def add(self, run: Run) -> None:
        self._by_id[run.run_id] = run
        self._by_key[(run.method, run.idempotency_key)] = run
        for started in self._awaited.pop(run.run_id, ()):
            started.set()
        running_seen = 0
        while len(self._by_id) - running_seen > self._keep:
            oldest_id, oldest = next(iter(self._by_id.items()))
            if not oldest.done.is_set():
                # Never forget a running run, but do not let it hold back the finished ones.
                self._by_id.move_to_end(oldest_id)
                running_seen += 1
                continue
            del self._by_id[oldest_id]
            key = (oldest.method, oldest.idempotency_key)
            if self._by_key.get(key) is oldest:
                del self._by_key[key]

    def by_key(self, method: str, idempotency_key: str) -> Run | None:
        return self._by_key.get((method, idempotency_key))

    def get(self, run_id: str) -> Run | None:
        return self._by_id.get(run_id)

    def wait_started(self, run_id: str, timeout: float) -> Run | None:
        """The run with this id, waiting up to ``timeout`` seconds for it to be started."""
        run = self._by_id.get(run_id)
        if run is not None or timeout <= 0:
            return run
        started = Event()
        waiters = self._awaited.setdefault(run_id, [])
        waiters.append(started)
        try:
            started.wait(timeout)
        finally:
            if not started.is_set():
                waiters.remove(started)
                if not waiters and self._awaited.get(run_id) is waiters:
                    del self._awaited[run_id]
        return self._by_id.get(run_id)

    def running(self, session_key: str) -> list[Run]:
        return [
            r for r in self._by_id.values() if r.session_key == session_key and not r.done.is_set()
        ]
