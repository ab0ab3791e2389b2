"""Session stores: SQLite (default, one host) and Redis (several hosts)."""

from __future__ import annotations

from ..agent.types import SessionStore
from ..config import SessionSettings


def open_store(settings: SessionSettings) -> SessionStore:
    """Return the store the settings name (nothing is opened until first use)."""
    ttl = settings.lock_ttl_ms / 1000
    if settings.store == "sqlite":
        from .sqlite import SqliteSessionStore

        return SqliteSessionStore(settings.sqlite_path, lease_ttl_seconds=ttl)
    from .redis import RedisSessionStore

    return RedisSessionStore(settings.store, lease_ttl_seconds=ttl, key_prefix=settings.key_prefix)
