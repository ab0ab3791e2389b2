"""Transcripts and session leases in one embedded SQLite file (WAL), shared by a host's workers.

Leases are rows (owner token + expiry) taken and released in short ``BEGIN IMMEDIATE``
transactions and polled with backoff while waiting: no transaction is ever held across a run,
since that would stall every session on the host and sqlite3 calls block the gevent hub.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from ..agent.types import Message, SessionInfo
from .lease import hold_lease

log = logging.getLogger("openclaw_gateway.sessions")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    key TEXT PRIMARY KEY,
    agent_id TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    message_count INTEGER NOT NULL
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
            return
        except sqlite3.OperationalError as exc:
            # Workers opening the file at once: the WAL switch answers "locked" at once, without
            # the busy timeout, and the run that happened to be first in its worker failed.
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.1)


class SqliteSessionStore:
    """The default store. One connection per process, used under a lock (calls are short)."""

    def __init__(self, path: str, *, lease_ttl_seconds: float = 30.0) -> None:
        self.path = path
        self.lease_ttl = lease_ttl_seconds
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
        with hold_lease(self, session_key, wait_seconds):
            history = [Message.from_dict(entry) for entry in self.load(session_key)]
            yield _SqliteTurn(self, session_key, history)

    # -- transcripts ----------------------------------------------------------------------

    def load(self, session_key: str) -> list[dict[str, Any]]:
        rows = self._query("SELECT data FROM entries WHERE key = ? ORDER BY seq", (session_key,))
        # One parse of the joined rows (each is a JSON object) instead of one per entry.
        return json.loads("[" + ",".join([row[0] for row in rows]) + "]")  # type: ignore[no-any-return]

    def append(self, session_key: str, agent_id: str, entries: list[dict[str, Any]]) -> None:
        if not entries:
            return
        with self._transaction() as db:
            row = db.execute(
                "SELECT message_count FROM sessions WHERE key = ?", (session_key,)
            ).fetchone()
            start = row[0] if row else 0
            db.executemany(
                "INSERT INTO entries (key, seq, data) VALUES (?, ?, ?)",
                [
                    (session_key, start + i, json.dumps(entry, separators=(",", ":")))
                    for i, entry in enumerate(entries)
                ],
            )
            db.execute(
                "INSERT INTO sessions (key, agent_id, updated_at, message_count) VALUES (?, ?, ?, ?)"
                " ON CONFLICT(key) DO UPDATE SET updated_at = excluded.updated_at,"
                " message_count = excluded.message_count",
                (session_key, agent_id, int(time.time() * 1000), start + len(entries)),
            )

    def list_sessions(self, limit: int = 1000) -> list[SessionInfo]:
        rows = self._query(
            "SELECT key, agent_id, updated_at, message_count FROM sessions"
            " ORDER BY updated_at DESC LIMIT ?",
            (limit,),
        )
        return [SessionInfo(*row) for row in rows]

    def delete(self, session_key: str) -> bool:
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


class _SqliteTurn:
    """A turn under a held lease: statements are local, so no step needs merging."""

    def __init__(self, store: SqliteSessionStore, session_key: str, history: list[Message]) -> None:
        self._store, self._session_key, self.history = store, session_key, history

    def append(self, agent_id: str, entries: list[dict[str, Any]]) -> None:
        self._store.append(self._session_key, agent_id, entries)
