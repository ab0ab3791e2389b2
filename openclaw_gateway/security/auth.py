"""Shared-secret auth for every surface: modes, constant-time comparison, the failure limiter."""

from __future__ import annotations

import hashlib
import hmac

from ..agent.errors import RateLimited, Unauthorized
from ..config import AuthSettings, is_loopback_host
from .limiter import FailureLimiter


def bearer_secret(authorization: str | None) -> str | None:
    """The secret of an ``Authorization: Bearer <secret>`` header (scheme case-insensitive)."""
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    value = value.strip()
    return value or None


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).digest()


class Guard:
    """Checks a presented secret for a client IP; raises ``Unauthorized`` or ``RateLimited``."""

    def __init__(self, settings: AuthSettings, limiter: FailureLimiter) -> None:
        self.settings = settings
        self.limiter = limiter
        self._expected = _digest(settings.secret) if settings.mode != "none" else b""
        self._loopback: dict[str, bool] = {}  # client IP -> is loopback (parsed once)

    @property
    def mode(self) -> str:
        return self.settings.mode

    def _limited(self, client_ip: str) -> bool:
        if not self.settings.rate_limit.exempt_loopback:
            return True
        loopback = self._loopback.get(client_ip)
        if loopback is None:
            if len(self._loopback) >= 4096:
                self._loopback.clear()
            loopback = self._loopback[client_ip] = is_loopback_host(client_ip)
        return not loopback

    def matches(self, presented: str) -> bool:
        """Compare in constant time (digests of equal length, whatever was presented)."""
        return hmac.compare_digest(_digest(presented), self._expected)

    def verify(self, client_ip: str, presented: str | None) -> None:
        """Accept or raise. Wrong secrets count towards a lockout; missing ones do not."""
        if self.settings.mode == "none":
            return
        limited = self._limited(client_ip)
        if limited:
            wait = self.limiter.locked_for(client_ip)
            if wait:
                raise RateLimited(retry_after=wait)
        if presented is None:
            raise Unauthorized()
        if self.matches(presented):
            if limited:
                self.limiter.reset(client_ip)
            return
        if limited:
            wait = self.limiter.record_failure(client_ip)
            if wait:
                raise RateLimited(retry_after=wait)
        raise Unauthorized()
