"""The SQLite store's per-process copies of transcripts: a turn reads only the entries it has
not seen, and whatever another process did to the session (append, delete, rewrite) is seen
anyway. Each ``SqliteSessionStore`` plays one gateway process; they share one file."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator

import pytest

from openclaw_gateway.agent.types import Message
from openclaw_gateway.sessions.sqlite import SqliteSessionStore
from tests.conftest import unique


@pytest.fixture
def path(tmp_path) -> str:
    return str(tmp_path / "sessions.sqlite3")


@pytest.fixture
def stores(path: str) -> Iterator[tuple[SqliteSessionStore, SqliteSessionStore]]:
    first, second = SqliteSessionStore(path), SqliteSessionStore(path)
    yield first, second
    first.close()
    second.close()


def entry(role: str, text: str) -> dict[str, object]:
    return {"role": role, "text": text, "timestamp": 1, "run_id": uuid.uuid4().hex}


def exchange(text: str) -> list[dict[str, object]]:
    return [entry("user", text), entry("assistant", f"re: {text}")]


def take_turn(store: SqliteSessionStore, key: str, text: str) -> list[Message]:
    with store.turn(key, wait_seconds=1) as turn:
        history = list(turn.history)
        turn.append("main", exchange(text))
    return history


def texts(history: list[Message]) -> list[str]:
    return [message.text for message in history]


def test_turn_sees_what_another_process_appended_and_reuses_what_it_had(stores):
    a, b = stores
    key = unique("s")
    take_turn(a, key, "one")
    before = take_turn(a, key, "two")
    take_turn(b, key, "three")
    after = take_turn(a, key, "four")
    assert texts(after) == ["one", "re: one", "two", "re: two", "three", "re: three"]
    # What a had was not read again: its parsed messages are the very same objects.
    assert all(x is y for x, y in zip(before, after[:2], strict=True))


def test_turn_after_another_process_deleted_the_session_starts_empty(stores):
    a, b = stores
    key = unique("s")
    take_turn(a, key, "one")
    assert b.delete(key)
    assert take_turn(a, key, "two") == []
    assert texts(take_turn(a, key, "three")) == ["two", "re: two"]


def test_turn_after_the_session_was_deleted_and_rewritten_sees_only_the_new_one(stores):
    a, b = stores
    key = unique("s")
    reply = entry("assistant", "same last entry")
    with a.turn(key, wait_seconds=1) as turn:
        turn.append("main", [entry("user", "old"), reply])
    b.delete(key)
    # As long as the old one and ending in the same entry: only the transcript id differs.
    b.append(key, "main", [entry("user", "new"), reply])
    assert texts(take_turn(a, key, "mine")) == ["new", "same last entry"]


def test_turn_whose_append_raced_another_writer_drops_its_copy(stores):
    a, b = stores
    key = unique("s")
    take_turn(a, key, "one")
    with a.turn(key, wait_seconds=1) as turn:
        # A writer that did not wait for the lease (one whose own lease had expired).
        b.append(key, "main", exchange("intruder"))
        turn.append("main", exchange("two"))
    expected = ["one", "re: one", "intruder", "re: intruder", "two", "re: two"]
    assert texts(take_turn(a, key, "three")) == expected


def test_a_turn_frees_the_lease_with_its_append(stores):
    a, b = stores
    key = unique("s")
    with a.turn(key, wait_seconds=1) as turn:
        turn.append("main", exchange("one"))
        # Freed by the append's own transaction: another process may start right away.
        with b.turn(key, wait_seconds=0.05) as other:
            assert texts(list(other.history)) == ["one", "re: one"]


def test_a_file_from_before_transcript_ids_is_read_and_gets_them(path):
    # The schema an earlier version created, with one session in it.
    db = sqlite3.connect(path, isolation_level=None)
    db.executescript(
        "CREATE TABLE sessions (key TEXT PRIMARY KEY, agent_id TEXT NOT NULL,"
        " updated_at INTEGER NOT NULL, message_count INTEGER NOT NULL);"
        "CREATE TABLE entries (key TEXT NOT NULL, seq INTEGER NOT NULL, data TEXT NOT NULL,"
        " PRIMARY KEY (key, seq)) WITHOUT ROWID;"
        "CREATE TABLE leases (key TEXT PRIMARY KEY, owner TEXT NOT NULL, expires_at REAL NOT NULL);"
        "INSERT INTO sessions VALUES ('legacy', 'main', 1, 2);"
        """INSERT INTO entries VALUES ('legacy', 0, '{"role":"user","text":"old"}');"""
        """INSERT INTO entries VALUES ('legacy', 1, '{"role":"assistant","text":"re: old"}');"""
    )
    db.close()
    a, b = SqliteSessionStore(path), SqliteSessionStore(path)
    assert texts(take_turn(a, "legacy", "one")) == ["old", "re: old"]
    take_turn(b, "legacy", "two")
    expected = ["old", "re: old", "one", "re: one", "two", "re: two"]
    assert texts(take_turn(a, "legacy", "three")) == expected
    assert [s.message_count for s in a.list_sessions() if s.key == "legacy"] == [8]


def test_load_returns_the_whole_transcript_whatever_the_copies(stores):
    a, b = stores
    key = unique("s")
    take_turn(a, key, "one")
    take_turn(b, key, "two")
    assert [e["text"] for e in a.load(key)] == ["one", "re: one", "two", "re: two"]
