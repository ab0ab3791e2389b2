"""Fixtures of the session tests: real Redis (its own key prefix per run) and both stores.

Redis is ``OPENCLAW_TEST_REDIS_URL`` (default db 15 on loopback). Under ``CI=true`` a missing
Redis fails the tests instead of skipping them. Only keys under this run's prefix are deleted.
"""

from __future__ import annotations

import os
import sqlite3
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from openclaw_gateway.sessions.redis import RedisSessionStore
from openclaw_gateway.sessions.sqlite import SqliteSessionStore

REDIS_URL = os.environ.get("OPENCLAW_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The test Redis, checked once: fail under CI, skip elsewhere, when it does not answer."""
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        message = f"no Redis at {REDIS_URL} (set OPENCLAW_TEST_REDIS_URL): {exc}"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    finally:
        client.close()
    return REDIS_URL


@pytest.fixture(scope="session")
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix of this test run; its keys (and only those) are deleted at the end."""
    prefix = f"openclaw-test:{uuid.uuid4().hex[:12]}:"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=prefix + "*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def raw_redis(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


class Backend:
    """One store kind, with raw access to its leases to play a worker that died holding one."""

    name = ""

    def open(self, lease_ttl_seconds: float = 30.0) -> SqliteSessionStore | RedisSessionStore:
        raise NotImplementedError

    def plant_lease(self, session_key: str, owner: str, ttl_seconds: float) -> None:
        """Write a lease as another process would, with no heartbeat behind it."""
        raise NotImplementedError

    def lease_owner(self, session_key: str) -> str | None:
        raise NotImplementedError


class SqliteBackend(Backend):
    name = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def open(self, lease_ttl_seconds: float = 30.0) -> SqliteSessionStore:
        return SqliteSessionStore(self.path, lease_ttl_seconds=lease_ttl_seconds)

    def _db(self) -> sqlite3.Connection:
        self.open().ping()  # creates the schema
        return sqlite3.connect(self.path, isolation_level=None)

    def plant_lease(self, session_key: str, owner: str, ttl_seconds: float) -> None:
        with self._db() as db:
            db.execute(
                "INSERT OR REPLACE INTO leases (key, owner, expires_at) VALUES (?, ?, ?)",
                (session_key, owner, time.time() + ttl_seconds),
            )

    def lease_owner(self, session_key: str) -> str | None:
        with self._db() as db:
            row = db.execute(
                "SELECT owner FROM leases WHERE key = ? AND expires_at > ?",
                (session_key, time.time()),
            ).fetchone()
        return row[0] if row else None


class RedisBackend(Backend):
    name = "redis"

    def __init__(self, url: str, prefix: str, client: redis.Redis) -> None:
        self.url, self.prefix, self.client = url, prefix, client

    def open(self, lease_ttl_seconds: float = 30.0) -> RedisSessionStore:
        return RedisSessionStore(
            self.url, lease_ttl_seconds=lease_ttl_seconds, key_prefix=self.prefix
        )

    def plant_lease(self, session_key: str, owner: str, ttl_seconds: float) -> None:
        self.client.set(f"{self.prefix}lease:{session_key}", owner, px=int(ttl_seconds * 1000))

    def lease_owner(self, session_key: str) -> str | None:
        return self.client.get(f"{self.prefix}lease:{session_key}")  # type: ignore[return-value]


@pytest.fixture(params=["sqlite", "redis"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """Each store kind in turn, empty: a fresh SQLite file, or a fresh Redis key prefix."""
    if request.param == "sqlite":
        return SqliteBackend(tmp_path / "sessions.sqlite3")
    prefix = request.getfixturevalue("redis_prefix") + uuid.uuid4().hex[:8] + ":"
    return RedisBackend(
        request.getfixturevalue("redis_url"), prefix, request.getfixturevalue("raw_redis")
    )
