"""Transcripts, the session index and session leases in Redis, shared by every worker and host.

Keys (all under a configurable prefix, default ``openclaw:``)::

    <prefix>transcript:<session key>   list of JSON entries, oldest first
    <prefix>session:<session key>      hash: agentId, messageCount, updatedAt
    <prefix>sessions                   sorted set of session keys by updatedAt (ms)
    <prefix>lease:<session key>        the lease: an owner token with an expiry (SET NX PX)

A turn's entries and its index update go in one ``MULTI``/``EXEC``, so a reader never sees half a
turn. The lease is released and extended only by its owner (compare-and-delete and
compare-and-extend in Lua), kept alive by a heartbeat while the run lasts, and simply expires
when the worker holding it dies.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, cast

import redis

from ..agent.errors import Unavailable
from ..agent.types import SessionInfo
from .lease import hold_lease

log = logging.getLogger("openclaw_gateway.sessions")

DEFAULT_KEY_PREFIX = "openclaw:"

# Delete / extend the lease only while it still holds our token: after an expiry another run may
# own it, and a late release must not free that run's lease.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_EXTEND = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""


def open_client(url: str) -> redis.Redis:
    """A client with bounded timeouts, so a dead server fails a request instead of hanging it."""
    return redis.Redis.from_url(
        url,
        decode_responses=True,
        socket_connect_timeout=5,
        socket_timeout=10,
        health_check_interval=30,
    )


@contextmanager
def _store_errors() -> Iterator[None]:
    try:
        yield
    except redis.RedisError as exc:
        log.warning("session store error: %s", exc)
        raise Unavailable("The session store is unavailable.") from exc


class RedisSessionStore:
    """The shared store. The client's pool reconnects after a fork, so one instance per process."""

    def __init__(
        self,
        url: str,
        *,
        lease_ttl_seconds: float = 30.0,
        key_prefix: str = DEFAULT_KEY_PREFIX,
    ) -> None:
        self.url = url
        self.lease_ttl = lease_ttl_seconds
        self.prefix = key_prefix
        self.client = open_client(url)
        self._release = self.client.register_script(_RELEASE)
        self._extend = self.client.register_script(_EXTEND)

    # -- keys -----------------------------------------------------------------------------

    def lease_key(self, session_key: str) -> str:
        return f"{self.prefix}lease:{session_key}"

    def _transcript_key(self, session_key: str) -> str:
        return f"{self.prefix}transcript:{session_key}"

    def _info_key(self, session_key: str) -> str:
        return f"{self.prefix}session:{session_key}"

    @property
    def _index_key(self) -> str:
        return f"{self.prefix}sessions"

    # -- leases ---------------------------------------------------------------------------

    @property
    def _ttl_ms(self) -> int:
        return max(1, int(self.lease_ttl * 1000))

    def _take_lease(self, session_key: str, owner: str) -> bool:
        with _store_errors():
            key = self.lease_key(session_key)
            return bool(self.client.set(key, owner, nx=True, px=self._ttl_ms))

    def _extend_lease(self, session_key: str, owner: str) -> bool:
        try:
            return bool(
                self._extend(keys=[self.lease_key(session_key)], args=[owner, self._ttl_ms])
            )
        except redis.RedisError:
            return True

    def _release_lease(self, session_key: str, owner: str) -> None:
        try:
            self._release(keys=[self.lease_key(session_key)], args=[owner])
        except redis.RedisError as exc:
            # The lease expires on its own; the run's result stands.
            log.warning("could not release the lease of %s: %s", session_key, exc)

    def lease(self, session_key: str, wait_seconds: float) -> AbstractContextManager[None]:
        return hold_lease(self, session_key, wait_seconds)

    # -- transcripts ----------------------------------------------------------------------

    def load(self, session_key: str) -> list[dict[str, Any]]:
        with _store_errors():
            raw = self.client.lrange(self._transcript_key(session_key), 0, -1)
        return [json.loads(item) for item in raw]

    def append(self, session_key: str, agent_id: str, entries: list[dict[str, Any]]) -> None:
        if not entries:
            return
        now = int(time.time() * 1000)
        info = self._info_key(session_key)
        with _store_errors(), self.client.pipeline(transaction=True) as tx:
            tx.rpush(
                self._transcript_key(session_key),
                *(json.dumps(entry, separators=(",", ":")) for entry in entries),
            )
            tx.hsetnx(info, "agentId", agent_id)
            tx.hincrby(info, "messageCount", len(entries))
            tx.hset(info, "updatedAt", now)
            tx.zadd(self._index_key, {session_key: now})
            tx.execute()

    def list_sessions(self, limit: int = 1000) -> list[SessionInfo]:
        with _store_errors():
            # decode_responses=True: members come back as str.
            keys = cast(list[str], self.client.zrevrange(self._index_key, 0, max(0, limit - 1)))
            with self.client.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.hgetall(self._info_key(key))
                infos = pipe.execute()
        return [
            SessionInfo(
                key=key,
                agent_id=info.get("agentId", ""),
                updated_at=int(info.get("updatedAt", 0)),
                message_count=int(info.get("messageCount", 0)),
            )
            for key, info in zip(keys, infos, strict=True)
            if info  # deleted between the two reads
        ]

    def delete(self, session_key: str) -> bool:
        with _store_errors(), self.client.pipeline(transaction=True) as tx:
            tx.delete(self._transcript_key(session_key), self._info_key(session_key))
            tx.zrem(self._index_key, session_key)
            _, removed = tx.execute()
        return bool(removed)

    def ping(self) -> None:
        self.client.ping()

    def close(self) -> None:
        self.client.close()
