"""The per-session lease both stores share: poll with backoff to take it, heartbeat while held.

A store supplies three atomic steps on its own medium (a SQLite row, a Redis key); how long to
wait, how often to beat and when to give up live here once.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

from ..agent.errors import SessionBusy

log = logging.getLogger("openclaw_gateway.sessions")

_FIRST_DELAY = 0.002
_MAX_DELAY = 0.05


class LeaseSteps(Protocol):
    lease_ttl: float

    def _take_lease(self, session_key: str, owner: str) -> bool:
        """Take the lease if it is free or expired."""
        ...

    def _extend_lease(self, session_key: str, owner: str) -> bool:
        """Push the expiry out; ``False`` once the lease is no longer ours (a transient failure
        is ``True``: the next beat tries again, and the lease outlives one missed beat)."""
        ...

    def _release_lease(self, session_key: str, owner: str) -> None:
        """Free the lease if it is still ours."""
        ...


@contextmanager
def hold_lease(store: LeaseSteps, session_key: str, wait_seconds: float) -> Iterator[None]:
    """Hold ``session_key``'s lease for the block; ``SessionBusy`` after ``wait_seconds``."""
    owner = uuid.uuid4().hex
    deadline = time.monotonic() + wait_seconds
    delay = _FIRST_DELAY
    while not store._take_lease(session_key, owner):
        if time.monotonic() >= deadline:
            raise SessionBusy(retry_after=1)
        time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
        delay = min(delay * 2, _MAX_DELAY)
    stop = threading.Event()
    # A thread, which gevent's patching turns into a greenlet: sessions/ stays free of gevent.
    beat = threading.Thread(target=_heartbeat, args=(store, session_key, owner, stop), daemon=True)
    beat.start()
    try:
        yield
    finally:
        stop.set()
        store._release_lease(session_key, owner)


def _heartbeat(store: LeaseSteps, session_key: str, owner: str, stop: threading.Event) -> None:
    while not stop.wait(store.lease_ttl / 3):
        if not store._extend_lease(session_key, owner):
            log.warning("lease of %s was lost (expired before a heartbeat)", session_key)
            return
