"""The in-memory auth-failure limiter (SPEC 2) as a unit: what it remembers stays bounded."""

from __future__ import annotations

from openclaw_gateway.config import RateLimitSettings
from openclaw_gateway.security import limiter as limiter_module
from openclaw_gateway.security.limiter import MemoryFailureLimiter


def test_lockouts_of_ips_that_never_return_do_not_accumulate(monkeypatch) -> None:
    monkeypatch.setattr(limiter_module, "MAX_TRACKED_IPS", 50)
    limiter = MemoryFailureLimiter(RateLimitSettings(max_attempts=1, lockout_seconds=300))
    for i in range(500):
        assert limiter.record_failure(f"2001:db8::{i:x}") == 300
    assert len(limiter._locked_until) <= 50
    assert limiter.locked_for("2001:db8::1f3") > 0, "the newest lockouts hold"


def test_expired_lockouts_are_dropped_when_a_new_one_starts(monkeypatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr(limiter_module.time, "monotonic", lambda: clock[0])
    limiter = MemoryFailureLimiter(RateLimitSettings(max_attempts=1, lockout_seconds=10))
    limiter.record_failure("203.0.113.1")
    clock[0] += 11
    limiter.record_failure("203.0.113.2")
    assert list(limiter._locked_until) == ["203.0.113.2"]
