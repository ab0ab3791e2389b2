"""The auth-failure limiter: wrong secrets per client IP in a sliding window, then a lockout.

``MemoryFailureLimiter`` serves one process; a Redis backend implements the same protocol so a
lockout holds on every worker and host.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict, deque
from typing import Protocol

from ..config import RateLimitSettings

MAX_TRACKED_IPS = 10_000


class FailureLimiter(Protocol):
    def locked_for(self, client_ip: str) -> int:
        """Seconds left of this IP's lockout (0 when not locked)."""
        ...

    def record_failure(self, client_ip: str) -> int:
        """Count a wrong secret; return the lockout's seconds if this failure starts one."""
        ...

    def reset(self, client_ip: str) -> None: ...


class MemoryFailureLimiter:
    def __init__(self, settings: RateLimitSettings) -> None:
        self.settings = settings
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._locked_until: dict[str, float] = {}
        self._lock = threading.Lock()

    def locked_for(self, client_ip: str) -> int:
        until = self._locked_until.get(client_ip)
        if until is None:
            return 0
        left = until - time.monotonic()
        if left <= 0:
            self._locked_until.pop(client_ip, None)
            return 0
        return max(1, math.ceil(left))

    def record_failure(self, client_ip: str) -> int:
        now = time.monotonic()
        with self._lock:
            window = self._failures.pop(client_ip, None) or deque()
            self._failures[client_ip] = window  # most recent last, for eviction
            window.append(now)
            while window and window[0] <= now - self.settings.window_seconds:
                window.popleft()
            while len(self._failures) > MAX_TRACKED_IPS:
                self._failures.popitem(last=False)
            if len(window) < self.settings.max_attempts or not self.settings.lockout_seconds:
                return 0
            del self._failures[client_ip]
            self._locked_until[client_ip] = now + self.settings.lockout_seconds
            return max(1, math.ceil(self.settings.lockout_seconds))

    def reset(self, client_ip: str) -> None:
        with self._lock:
            self._failures.pop(client_ip, None)
