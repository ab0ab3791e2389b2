"""The auth-failure limiter: wrong secrets per client IP in a sliding window, then a lockout.

``MemoryFailureLimiter`` serves one process (the SQLite setup); ``RedisFailureLimiter`` keeps the
window and the lockout in Redis, so a lockout holds on every worker and host.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from collections import OrderedDict, deque
from typing import TYPE_CHECKING, Protocol

from ..config import RateLimitSettings

if TYPE_CHECKING:
    import redis

log = logging.getLogger("openclaw_gateway.security")

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
        # Lockouts in the order they started: with one lockout length, oldest expires first.
        self._locked_until: OrderedDict[str, float] = OrderedDict()
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
            self._locked_until.pop(client_ip, None)
            self._locked_until[client_ip] = now + self.settings.lockout_seconds
            # An IP that never comes back would keep its expired entry forever: bound the map.
            while self._locked_until and (
                len(self._locked_until) > MAX_TRACKED_IPS
                or next(iter(self._locked_until.values())) <= now
            ):
                self._locked_until.popitem(last=False)
            return max(1, math.ceil(self.settings.lockout_seconds))

    def reset(self, client_ip: str) -> None:
        with self._lock:
            self._failures.pop(client_ip, None)


# Count one failure in the IP's window (a sorted set scored by the server's clock, so hosts with
# skewed clocks agree); at the limit, drop the window and set the lockout key, all atomically.
# KEYS: window, lockout. ARGV: window ms, max attempts, lockout ms, a unique member.
_RECORD_FAILURE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[1])
redis.call('ZADD', KEYS[1], now, ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
redis.call('PEXPIRE', KEYS[1], window)
local lockout = tonumber(ARGV[3])
if lockout > 0 and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  redis.call('DEL', KEYS[1])
  redis.call('SET', KEYS[2], '1', 'PX', lockout)
  return lockout
end
return 0
"""


class RedisFailureLimiter:
    """The limiter shared by every worker and host using one Redis.

    A Redis outage fails open (no lockout, logged): the secret is still checked, and refusing every
    login because the counter store is down would lock everyone out.
    """

    def __init__(
        self, client: redis.Redis, settings: RateLimitSettings, key_prefix: str = "openclaw:"
    ) -> None:
        self.settings = settings
        self.client = client
        self.prefix = key_prefix
        self._record = client.register_script(_RECORD_FAILURE)

    def _window_key(self, client_ip: str) -> str:
        return f"{self.prefix}authfail:{client_ip}"

    def _lockout_key(self, client_ip: str) -> str:
        return f"{self.prefix}authlock:{client_ip}"

    def locked_for(self, client_ip: str) -> int:
        try:
            left_ms = int(self.client.pttl(self._lockout_key(client_ip)))
        except Exception as exc:  # noqa: BLE001 - fail open, see the class docstring
            log.warning("auth limiter unavailable: %s", exc)
            return 0
        return max(1, math.ceil(left_ms / 1000)) if left_ms > 0 else 0

    def record_failure(self, client_ip: str) -> int:
        try:
            lockout_ms = self._record(
                keys=[self._window_key(client_ip), self._lockout_key(client_ip)],
                args=[
                    max(1, int(self.settings.window_seconds * 1000)),
                    self.settings.max_attempts,
                    int(self.settings.lockout_seconds * 1000),
                    uuid.uuid4().hex,
                ],
            )
        except Exception as exc:  # noqa: BLE001 - fail open, see the class docstring
            log.warning("auth limiter unavailable: %s", exc)
            return 0
        return max(1, math.ceil(int(lockout_ms) / 1000)) if lockout_ms else 0

    def reset(self, client_ip: str) -> None:
        try:
            self.client.delete(self._window_key(client_ip))
        except Exception as exc:  # noqa: BLE001 - fail open, see the class docstring
            log.warning("auth limiter unavailable: %s", exc)
