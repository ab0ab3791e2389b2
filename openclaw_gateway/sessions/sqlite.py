"""Transcripts and session leases in one embedded SQLite file (WAL), shared by a host's workers.

Leases are rows (owner token + expiry) taken and released in short ``BEGIN IMMEDIATE``
transactions and polled with backoff while waiting: no transaction is ever held across a run,
since that would stall every session on the host and sqlite3 calls block the gevent hub.

Each process keeps a copy of the transcripts it used last (``cache.py``), as the Redis store
does: a session's ``transcript_id`` is set with its first entry and goes with the session when
it is deleted, and a transcript only grows while its id lasts, so a copy whose id and last entry
still match is the start of the stored transcript: a turn reads just the entries after it.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from ..agent.types import Message, SessionInfo
from .cache import DEFAULT_CACHE_SIZE, TranscriptCache, TranscriptCopy
from .lease import Heartbeat, Lease, hold_lease

log = logging.getLogger("openclaw_gateway.sessions")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    key TEXT PRIMARY KEY,
    agent_id TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    message_count INTEGER NOT NULL,
    transcript_id TEXT
);
CREATE TABLE IF NOT EXISTS entries (
    key TEXT NOT NULL,
    seq INTEGER NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (key, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS leases (
    key TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    expires_at REAL NOT NULL
);
"""


_SETUP_SECONDS = 10.0


def _set_up(db: sqlite3.Connection) -> None:
    """Switch to WAL and create the schema, waiting out other processes doing the same."""
    deadline = time.monotonic() + _SETUP_SECONDS
    delay = 0.005
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(_SCHEMA)
            _add_transcript_ids(db)
            return
        except sqlite3.OperationalError as exc:
            # Workers opening the file at once: the WAL switch answers "locked" at once, without
            # the busy timeout, and the run that happened to be first in its worker failed.
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.1)


def _add_transcript_ids(db: sqlite3.Connection) -> None:
    """Files written before transcript ids get the column (their sessions get an id with their
    next turn; until then no copy of them is trusted)."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(sessions)")}
    if "transcript_id" in columns:
        return
    try:
        db.execute("ALTER TABLE sessions ADD COLUMN transcript_id TEXT")
    except sqlite3.OperationalError as exc:
        if "duplicate column" not in str(exc):  # another worker added it first
            raise


class SqliteSessionStore:
    """The default store. One connection per process, used under a lock (calls are short)."""

    def __init__(
        self, path: str, *, lease_ttl_seconds: float = 30.0, cache_size: int = DEFAULT_CACHE_SIZE
    ) -> None:
        self.path = path
        self.lease_ttl = lease_ttl_seconds
        self.cache = TranscriptCache(cache_size)
        self.heartbeat = Heartbeat(self)
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._pid = 0

    # -- connection -----------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        if self._db is None or self._pid != os.getpid():
            os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
            db = sqlite3.connect(
                self.path, timeout=5.0, isolation_level=None, check_same_thread=False
            )
            try:
                _set_up(db)
            except BaseException:
                db.close()
                raise
            self._db, self._pid = db, os.getpid()
        return self._db

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            db = self._connect()
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
        with self._lock:
            return self._connect().execute(sql, args).fetchall()

    # -- leases ---------------------------------------------------------------------------

    def _execute(self, sql: str, args: tuple[Any, ...]) -> int:
        """One statement in autocommit (atomic on its own); the number of rows it changed."""
        with self._lock:
            return self._connect().execute(sql, args).rowcount

    def _take_lease(self, key: str, owner: str) -> bool:
        # One upsert instead of BEGIN IMMEDIATE / SELECT / INSERT / COMMIT: a free or expired
        # lease is taken, a live one is left alone (0 rows changed).
        now = time.time()
        return (
            self._execute(
                "INSERT INTO leases (key, owner, expires_at) VALUES (?, ?, ?)"
                " ON CONFLICT(key) DO UPDATE SET owner = excluded.owner,"
                " expires_at = excluded.expires_at WHERE leases.expires_at <= ?",
                (key, owner, now + self.lease_ttl, now),
            )
            > 0
        )

    def _extend_lease(self, key: str, owner: str) -> bool:
        try:
            return (
                self._execute(
                    "UPDATE leases SET expires_at = ? WHERE key = ? AND owner = ?",
                    (time.time() + self.lease_ttl, key, owner),
                )
                > 0
            )
        except sqlite3.Error:
            return True

    def _release_lease(self, key: str, owner: str) -> None:
        try:
            self._execute("DELETE FROM leases WHERE key = ? AND owner = ?", (key, owner))
        except sqlite3.Error as exc:
            # The turn is written by now: failing here would report a stored turn as failed
            # (and a client retry would store it twice). The lease expires on its own.
            log.warning("could not release the lease of %s: %s", key, exc)

    def lease(self, session_key: str, wait_seconds: float) -> AbstractContextManager[object]:
        return hold_lease(self, session_key, wait_seconds)

    @contextmanager
    def turn(self, session_key: str, wait_seconds: float) -> Iterator[_SqliteTurn]:
        with hold_lease(self, session_key, wait_seconds) as lease:
            yield _SqliteTurn(self, lease, self._load_copy(session_key))

    def _load_copy(self, session_key: str) -> TranscriptCopy:
        """The transcript under the held lease: this process's copy and what came after it."""
        copy = self.cache.get(session_key)
        if copy is not None:
            # One statement, one snapshot: the id, our copy's last entry and what follows it.
            rows = self._query(
                "SELECT s.transcript_id, e.seq, e.data FROM sessions s"
                " JOIN entries e ON e.key = s.key WHERE s.key = ? AND e.seq >= ? ORDER BY e.seq",
                (session_key, len(copy.messages) - 1),
            )
            if (
                rows
                and rows[0][0] == copy.transcript_id
                and rows[0][1] == len(copy.messages) - 1
                and rows[0][2] == copy.last_text
            ):
                if len(rows) > 1:
                    texts = [row[2] for row in rows[1:]]
                    copy = _extended(copy, copy.transcript_id, texts)
                    self.cache.put(session_key, copy)
                return copy
        rows = self._query(
            "SELECT s.transcript_id, e.data FROM sessions s"
            " JOIN entries e ON e.key = s.key WHERE s.key = ? ORDER BY e.seq",
            (session_key,),
        )
        transcript_id = (rows[0][0] if rows else None) or ""
        copy = _extended(_EMPTY, transcript_id, [row[1] for row in rows])
        if transcript_id:
            self.cache.put(session_key, copy)
        else:
            # Empty, or written before transcript ids: nothing to check a copy against.
            self.cache.discard(session_key)
        return copy

    # -- transcripts ----------------------------------------------------------------------

    def load(self, session_key: str) -> list[dict[str, Any]]:
        rows = self._query("SELECT data FROM entries WHERE key = ? ORDER BY seq", (session_key,))
        return _parse([row[0] for row in rows])

    def append(self, session_key: str, agent_id: str, entries: list[dict[str, Any]]) -> None:
        self._append_entries(session_key, agent_id, entries)

    def _append_entries(
        self,
        session_key: str,
        agent_id: str,
        entries: list[dict[str, Any]],
        lease: Lease | None = None,
    ) -> tuple[int, str, list[str]]:
        """Append in one transaction, releasing ``lease`` in it; the seq of the first new entry,
        the transcript id and the entries' texts."""
        texts = [json.dumps(entry, separators=(",", ":")) for entry in entries]
        if not texts:
            return 0, "", texts
        with self._transaction() as db:
            row = db.execute(
                "SELECT message_count, transcript_id FROM sessions WHERE key = ?", (session_key,)
            ).fetchone()
            start = row[0] if row else 0
            transcript_id = (row[1] if row else None) or uuid.uuid4().hex
            db.executemany(
                "INSERT INTO entries (key, seq, data) VALUES (?, ?, ?)",
                [(session_key, start + i, text) for i, text in enumerate(texts)],
            )
            db.execute(
                "INSERT INTO sessions (key, agent_id, updated_at, message_count, transcript_id)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT(key) DO UPDATE SET"
                " updated_at = excluded.updated_at, message_count = excluded.message_count,"
                " transcript_id = excluded.transcript_id",
                (session_key, agent_id, int(time.time() * 1000), start + len(texts), transcript_id),
            )
            if lease is not None:
                # Freed with the write if it is still ours (one commit fewer per turn).
                db.execute(
                    "DELETE FROM leases WHERE key = ? AND owner = ?", (session_key, lease.owner)
                )
        if lease is not None:
            lease.released = True
        return start, transcript_id, texts

    def list_sessions(self, limit: int = 1000) -> list[SessionInfo]:
        rows = self._query(
            "SELECT key, agent_id, updated_at, message_count FROM sessions"
            " ORDER BY updated_at DESC LIMIT ?",
            (limit,),
        )
        return [SessionInfo(*row) for row in rows]

    def delete(self, session_key: str) -> bool:
        self.cache.discard(session_key)
        with self._transaction() as db:
            db.execute("DELETE FROM entries WHERE key = ?", (session_key,))
            deleted = db.execute("DELETE FROM sessions WHERE key = ?", (session_key,)).rowcount
        return deleted > 0

    def ping(self) -> None:
        self._query("SELECT 1")

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None


_EMPTY = TranscriptCopy("", (), "", 0)


def _parse(texts: list[str]) -> list[dict[str, Any]]:
    """Stored entries (each a JSON object) in one parse of the joined texts, not one each."""
    return json.loads("[" + ",".join(texts) + "]") if texts else []  # type: ignore[no-any-return]


def _extended(copy: TranscriptCopy, transcript_id: str, texts: list[str]) -> TranscriptCopy:
    """``copy`` with the stored entries ``texts`` after it."""
    if not texts:
        return TranscriptCopy(transcript_id, copy.messages, copy.last_text, copy.size)
    messages = tuple([Message.from_dict(entry) for entry in _parse(texts)])
    return TranscriptCopy(
        transcript_id,
        copy.messages + messages,
        texts[-1],
        copy.size + sum(map(len, texts)) + len(texts),
    )


class _SqliteTurn:
    """A turn under a held lease; its append also frees the lease, in the same transaction."""

    def __init__(self, store: SqliteSessionStore, lease: Lease, loaded: TranscriptCopy) -> None:
        self._store = store
        self._lease = lease
        self._loaded = loaded

    @property
    def history(self) -> tuple[Message, ...]:
        return self._loaded.messages

    def append(self, agent_id: str, entries: list[dict[str, Any]]) -> None:
        store, loaded, session_key = self._store, self._loaded, self._lease.session_key
        start, transcript_id, texts = store._append_entries(
            session_key, agent_id, entries, self._lease
        )
        if not texts:
            return
        # The stored transcript is the loaded one plus ours if ours went in right after it,
        # under the same id (or it was empty): keep that as the copy for the next turn.
        if start == len(loaded.messages) and (
            transcript_id == loaded.transcript_id or not loaded.messages
        ):
            store.cache.put(session_key, _extended(loaded, transcript_id, texts))
        else:
            store.cache.discard(session_key)
