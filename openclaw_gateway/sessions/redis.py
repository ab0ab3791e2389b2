"""Transcripts, the session index and session leases in Redis, shared by every worker and host.

Keys (all under a configurable prefix, default ``openclaw:``)::

    <prefix>transcript:<session key>   list of JSON entries, oldest first
    <prefix>session:<session key>      hash: agentId, messageCount, updatedAt, transcriptId
    <prefix>sessions                   sorted set of session keys by updatedAt (ms)
    <prefix>lease:<session key>        the lease: an owner token with an expiry (SET NX PX)

A turn is two round trips, each one Lua script (atomic, like ``MULTI``/``EXEC``): one takes the
lease and returns the transcript, one appends the turn's entries, updates the index and releases
the lease, so a reader never sees half a turn. The lease is released and extended only by its
owner (compare-and-delete and compare-and-extend), kept alive by a heartbeat while the run lasts,
and simply expires when the worker holding it dies.

The transcript comes back as one string (the entries joined with commas) and is parsed once,
not entry by entry. Each process also keeps a copy of the transcripts it used last
(``cache.py``): ``transcriptId`` is set with a transcript's first entry and deleted with it, and
a transcript only grows while its id lasts, so the take script can tell that a copy is still the
start of the stored transcript and send just the entries after it (written by other workers or
hosts). Transcripts written before ``transcriptId`` existed get one with their next turn.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, cast

import redis

from ..agent.errors import Unavailable
from ..agent.types import Message, SessionInfo
from .cache import DEFAULT_CACHE_SIZE, TranscriptCache, TranscriptCopy
from .lease import Heartbeat, Lease, hold_lease

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
# Take the lease (nil when it is held) and return {transcript id, first index sent, entries from
# there joined with commas, last entry}. A copy of ARGV[4] entries whose id and last entry still
# match is the start of the stored list (it only grows while its id lasts): only the rest is sent.
_TAKE_AND_LOAD = """
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return false end
local id = redis.call('HGET', KEYS[3], 'transcriptId') or ''
local start = tonumber(ARGV[4])
if start == 0 or id ~= ARGV[3]
    or redis.call('LINDEX', KEYS[2], start - 1) ~= ARGV[5] then
  start = 0
end
local entries = redis.call('LRANGE', KEYS[2], start, -1)
return {id, start, table.concat(entries, ','), entries[#entries] or ''}
"""
_LOAD = """
return table.concat(redis.call('LRANGE', KEYS[1], 0, -1), ',')
"""
# Append ARGV[6..] and update the index; release the lease if ARGV[5] still owns it. Returns
# {the list's new length, its transcript id}. RPUSH is the first write: under maxmemory the
# script fails before writing anything, and once it wrote, Redis lets it finish.
_APPEND = """
local length = 0
for i = 6, #ARGV do length = redis.call('RPUSH', KEYS[1], ARGV[i]) end
redis.call('HSETNX', KEYS[2], 'agentId', ARGV[2])
redis.call('HINCRBY', KEYS[2], 'messageCount', #ARGV - 5)
redis.call('HSET', KEYS[2], 'updatedAt', ARGV[3])
redis.call('HSETNX', KEYS[2], 'transcriptId', ARGV[4])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1])
if ARGV[5] ~= '' and redis.call('GET', KEYS[4]) == ARGV[5] then redis.call('DEL', KEYS[4]) end
return {length, redis.call('HGET', KEYS[2], 'transcriptId')}
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
        cache_size: int = DEFAULT_CACHE_SIZE,
    ) -> None:
        self.url = url
        self.lease_ttl = lease_ttl_seconds
        self.prefix = key_prefix
        self.client = open_client(url)
        self.cache = TranscriptCache(cache_size)
        self.heartbeat = Heartbeat(self)
        self._release = self.client.register_script(_RELEASE)
        self._extend = self.client.register_script(_EXTEND)
        self._take_and_load_script = self.client.register_script(_TAKE_AND_LOAD)
        self._load = self.client.register_script(_LOAD)
        self._append = self.client.register_script(_APPEND)

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

    def lease(self, session_key: str, wait_seconds: float) -> AbstractContextManager[object]:
        return hold_lease(self, session_key, wait_seconds)

    # -- turns ----------------------------------------------------------------------------

    @contextmanager
    def turn(self, session_key: str, wait_seconds: float) -> Iterator[_RedisTurn]:
        with hold_lease(
            self, session_key, wait_seconds, lambda owner: self._take_and_load(session_key, owner)
        ) as lease:
            yield _RedisTurn(self, lease)

    def _take_and_load(self, session_key: str, owner: str) -> TranscriptCopy | None:
        """Take the lease and load the transcript in one round trip; None while it is held."""
        copy = self.cache.get(session_key)
        known = (copy.transcript_id, len(copy.messages), copy.last_text) if copy else ("", 0, "")
        keys = [
            self.lease_key(session_key),
            self._transcript_key(session_key),
            self._info_key(session_key),
        ]
        with _store_errors():
            reply = self._take_and_load_script(keys=keys, args=[owner, self._ttl_ms, *known])
        if reply is None:
            return None
        transcript_id, start, joined, last_text = reply
        messages = tuple([Message.from_dict(entry) for entry in _parse(joined)])
        if start and copy is not None:  # the script found our copy current: it sent the rest
            copy = TranscriptCopy(
                transcript_id,
                copy.messages + messages,
                last_text or copy.last_text,
                copy.size + len(joined),
            )
        else:
            copy = TranscriptCopy(transcript_id, messages, last_text, len(joined))
        if transcript_id:
            self.cache.put(session_key, copy)
        else:
            # Empty, or written before transcript ids: nothing to check a copy against.
            self.cache.discard(session_key)
        return copy

    # -- transcripts ----------------------------------------------------------------------

    def load(self, session_key: str) -> list[dict[str, Any]]:
        with _store_errors():
            joined = self._load(keys=[self._transcript_key(session_key)])
        return _parse(joined)

    def append(self, session_key: str, agent_id: str, entries: list[dict[str, Any]]) -> None:
        self._append_entries(session_key, agent_id, entries)

    def _append_entries(
        self,
        session_key: str,
        agent_id: str,
        entries: list[dict[str, Any]],
        lease: Lease | None = None,
    ) -> tuple[int, str, list[str]]:
        """Append in one script, releasing ``lease`` with it; the new length, id and texts."""
        texts = [json.dumps(entry, separators=(",", ":")) for entry in entries]
        if not texts:
            return 0, "", texts
        keys = [
            self._transcript_key(session_key),
            self._info_key(session_key),
            self._index_key,
            self.lease_key(session_key),
        ]
        now = int(time.time() * 1000)
        owner = lease.owner if lease else ""
        with _store_errors():
            length, transcript_id = self._append(
                keys=keys, args=[session_key, agent_id, now, uuid.uuid4().hex, owner, *texts]
            )
        if lease is not None:
            # Freed if it was still ours; if it was not, there is nothing of ours to free.
            lease.released = True
        return int(length), transcript_id, texts

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
        self.cache.discard(session_key)
        with _store_errors(), self.client.pipeline(transaction=True) as tx:
            tx.delete(self._transcript_key(session_key), self._info_key(session_key))
            tx.zrem(self._index_key, session_key)
            _, removed = tx.execute()
        return bool(removed)

    def ping(self) -> None:
        self.client.ping()

    def close(self) -> None:
        self.client.close()


class _RedisTurn:
    """A turn under a held lease, its transcript loaded by the script that took the lease."""

    def __init__(self, store: RedisSessionStore, lease: Lease) -> None:
        self._store = store
        self._lease = lease
        self._loaded: TranscriptCopy = lease.taken

    @property
    def history(self) -> tuple[Message, ...]:
        return self._loaded.messages

    def append(self, agent_id: str, entries: list[dict[str, Any]]) -> None:
        store, loaded, session_key = self._store, self._loaded, self._lease.session_key
        length, transcript_id, texts = store._append_entries(
            session_key, agent_id, entries, self._lease
        )
        if not texts:
            return
        # The stored list is the loaded one plus ours if it had as many entries before our
        # append, under the same id (or was empty): keep that as the copy for the next turn.
        if length == len(loaded.messages) + len(entries) and (
            transcript_id == loaded.transcript_id or not loaded.messages
        ):
            store.cache.put(
                session_key,
                TranscriptCopy(
                    transcript_id,
                    loaded.messages + tuple([Message.from_dict(entry) for entry in entries]),
                    texts[-1],
                    loaded.size + sum(map(len, texts)) + len(texts),
                ),
            )
        else:
            store.cache.discard(session_key)


def _parse(joined: str) -> list[dict[str, Any]]:
    """The entries of a comma-joined list of JSON objects, in one parse."""
    return json.loads("[" + joined + "]") if joined else []  # type: ignore[no-any-return]
