"""The per-session lease both stores share: poll with backoff to take it, heartbeat while held.

A store supplies three atomic steps on its own medium (a SQLite row, a Redis key); how long to
wait, how often to beat and when to give up live here once. A store may take the lease with a
step of its own that also loads the transcript, and may release it in the write that appends
the turn (``Lease.released``): one round trip each instead of two.

One heartbeat per store extends every lease the process holds (``Heartbeat``): a thread per
lease cost every stateful turn a thread start, two greenlet switches and a wake-up to stop it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from ..agent.errors import SessionBusy

log = logging.getLogger("openclaw_gateway.sessions")

_FIRST_DELAY = 0.002
_MAX_DELAY = 0.05


class LeaseSteps(Protocol):
    lease_ttl: float
    heartbeat: Heartbeat

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


@dataclass(eq=False)
class Lease:
    """A held lease: its owner token and what the step that took it returned."""

    session_key: str
    owner: str
    taken: Any = True
    # Set by a store that freed the lease (if still ours) along with a write: nothing left to do.
    released: bool = False


@contextmanager
def hold_lease(
    store: LeaseSteps,
    session_key: str,
    wait_seconds: float,
    take: Callable[[str], Any] | None = None,
) -> Iterator[Lease]:
    """Hold ``session_key``'s lease for the block; ``SessionBusy`` after ``wait_seconds``.

    ``take(owner)`` replaces the store's ``_take_lease``: anything truthy means taken, and is
    kept as ``Lease.taken``.
    """
    owner = os.urandom(16).hex()
    deadline = time.monotonic() + wait_seconds
    delay = _FIRST_DELAY
    take = take or (lambda owner: store._take_lease(session_key, owner))
    while not (taken := take(owner)):
        if time.monotonic() >= deadline:
            raise SessionBusy(retry_after=1)
        time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
        delay = min(delay * 2, _MAX_DELAY)
    lease = Lease(session_key, owner, taken)
    store.heartbeat.hold(lease)
    try:
        yield lease
    finally:
        store.heartbeat.drop(lease)
        if not lease.released:
            store._release_lease(session_key, owner)


class Heartbeat:
    """Every ``lease_ttl / 3``, extend each lease of ``store`` that this process holds.

    The first beat of a lease comes at most a third of its TTL after it was taken, as with a
    beat of its own. The beat runs in a thread (a greenlet under gevent's patching: sessions/
    stays free of gevent) that ends when no lease is held and starts again with the next one.
    """

    def __init__(self, store: LeaseSteps) -> None:
        self._store = store
        self._leases: dict[Lease, None] = {}  # an ordered set
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def hold(self, lease: Lease) -> None:
        with self._lock:
            self._leases[lease] = None
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._beat, name="lease-heartbeat", daemon=True
                )
                self._thread.start()

    def drop(self, lease: Lease) -> None:
        with self._lock:
            self._leases.pop(lease, None)

    def _beat(self) -> None:
        store = self._store
        while True:
            time.sleep(store.lease_ttl / 3)
            with self._lock:
                leases = list(self._leases)
                if not leases:
                    self._thread = None
                    return
            for lease in leases:
                if lease.released or lease not in self._leases:
                    continue
                if not store._extend_lease(lease.session_key, lease.owner):
                    self.drop(lease)
                    if not lease.released:
                        log.warning(
                            "lease of %s was lost (expired before a heartbeat)", lease.session_key
                        )
