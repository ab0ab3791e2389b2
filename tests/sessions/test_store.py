"""One suite, run against both session stores: SQLite and Redis behave the same."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest

from openclaw_gateway.agent.errors import SessionBusy
from openclaw_gateway.agent.types import SessionStore, SessionTurn
from openclaw_gateway.sessions.sqlite import SqliteSessionStore
from tests.conftest import unique, wait_until
from tests.sessions.conftest import Backend


@pytest.fixture
def store(backend: Backend) -> Iterator[SessionStore]:
    opened = backend.open()
    yield opened
    opened.close()


def entry(role: str, text: str) -> dict[str, object]:
    return {"role": role, "text": text, "timestamp": 1, "run_id": "r"}


def texts(entries: list[dict[str, object]]) -> list[object]:
    return [e["text"] for e in entries]


def test_load_returns_appended_entries_in_order(store):
    key = unique("s")
    store.append(key, "main", [entry("user", "one"), entry("assistant", "two")])
    store.append(key, "main", [entry("user", "three"), entry("assistant", "four")])
    assert texts(store.load(key)) == ["one", "two", "three", "four"]
    assert store.load(key)[0] == entry("user", "one")


def test_load_of_unknown_session_is_empty(store):
    assert store.load(unique("missing")) == []


def test_concurrent_multi_entry_appends_never_interleave(backend):
    key = unique("s")
    stores = [backend.open(), backend.open()]

    def write(writer: int) -> None:
        for turn in range(25):
            tag = f"{writer}-{turn}"
            stores[writer].append(key, "main", [entry("user", f"u{tag}"), entry("assistant", tag)])

    with ThreadPoolExecutor(2) as pool:
        list(pool.map(write, range(2)))
    loaded = texts(stores[0].load(key))
    assert len(loaded) == 100
    pairs = [(loaded[i], loaded[i + 1]) for i in range(0, 100, 2)]
    assert all(user == f"u{reply}" for user, reply in pairs)
    assert {reply for _, reply in pairs} == {f"{w}-{t}" for w in range(2) for t in range(25)}
    [info] = [s for s in stores[0].list_sessions() if s.key == key]
    assert info.message_count == 100
    for opened in stores:
        opened.close()


def test_list_sessions_shows_agent_count_newest_first(store):
    older, newer = unique("old"), unique("new")
    store.append(older, "main", [entry("user", "a"), entry("assistant", "b")])
    written = time.time()
    # The index orders by millisecond: let the clock move on so "newer" really is newer.
    wait_until(lambda: time.time() > written + 0.002, what="the clock to advance")
    store.append(newer, "writer", [entry("user", "c")])
    store.append(newer, "writer", [entry("assistant", "d")])
    listed = store.list_sessions()
    assert [s.key for s in listed] == [newer, older]
    assert [(s.agent_id, s.message_count) for s in listed] == [("writer", 2), ("main", 2)]
    assert listed[0].updated_at >= listed[1].updated_at > 0
    assert [s.key for s in store.list_sessions(limit=1)] == [newer]


def test_delete_removes_transcript_and_index_entry(store):
    key, kept = unique("gone"), unique("kept")
    store.append(key, "main", [entry("user", "a")])
    store.append(kept, "main", [entry("user", "b")])
    assert store.delete(key) is True
    assert store.load(key) == []
    assert [s.key for s in store.list_sessions()] == [kept]
    assert store.delete(key) is False


def test_ping_answers(store):
    store.ping()


def test_lease_excludes_a_second_holder_until_released(backend):
    key = unique("s")
    first, second = backend.open(), backend.open()
    with first.lease(key, wait_seconds=1):
        with pytest.raises(SessionBusy):
            with second.lease(key, wait_seconds=0.2):
                pass
    with second.lease(key, wait_seconds=0):
        assert backend.lease_owner(key) is not None
    assert backend.lease_owner(key) is None


def test_lease_wait_times_out_with_session_busy_409_and_retry_after(backend):
    key = unique("s")
    backend.plant_lease(key, "someone-else", ttl_seconds=60)
    with pytest.raises(SessionBusy) as busy:
        with backend.open().lease(key, wait_seconds=0.3):
            pass
    assert busy.value.status == 409
    assert busy.value.retry_after and busy.value.retry_after >= 1


def test_lease_is_taken_by_a_waiter_once_it_frees(backend):
    key = unique("s")
    holder, waiter = backend.open(), backend.open()
    took = threading.Event()
    entered = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with holder.lease(key, wait_seconds=1):
            entered.set()
            release.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    assert entered.wait(10)

    def wait_for_lease() -> None:
        with waiter.lease(key, wait_seconds=10):
            took.set()

    other = threading.Thread(target=wait_for_lease)
    other.start()
    assert not took.is_set()
    release.set()
    thread.join(10)
    other.join(10)
    assert took.is_set()


def test_lease_of_a_dead_owner_expires(backend):
    key = unique("s")
    # A worker that died mid-run: its lease has no heartbeat and runs out.
    backend.plant_lease(key, "dead-worker", ttl_seconds=1.0)
    store = backend.open()
    with pytest.raises(SessionBusy):
        with store.lease(key, wait_seconds=0):
            pass
    with store.lease(key, wait_seconds=10):
        assert backend.lease_owner(key) not in (None, "dead-worker")


def test_heartbeat_keeps_a_running_lease_beyond_its_ttl(backend):
    key = unique("s")
    holder, other = backend.open(lease_ttl_seconds=0.3), backend.open(lease_ttl_seconds=0.3)
    with holder.lease(key, wait_seconds=1):
        # Waiting several TTLs: only the heartbeat keeps the lease from expiring meanwhile.
        with pytest.raises(SessionBusy):
            with other.lease(key, wait_seconds=1.2):
                pass


def test_lease_is_released_only_by_its_owner(backend):
    key = unique("s")
    store = backend.open()
    with store.lease(key, wait_seconds=1):
        mine = backend.lease_owner(key)
        # Our lease expired and another run took the session over.
        backend.plant_lease(key, "new-owner", ttl_seconds=60)
    assert mine not in (None, "new-owner")
    assert backend.lease_owner(key) == "new-owner"
    with pytest.raises(SessionBusy):
        with store.lease(key, wait_seconds=0):
            pass


def test_a_failed_sqlite_lease_release_leaves_the_written_turn_standing(tmp_path, monkeypatch):
    store = SqliteSessionStore(str(tmp_path / "sessions.sqlite3"), lease_ttl_seconds=30)
    key = unique("s")

    @contextmanager
    def locked():
        raise sqlite3.OperationalError("database is locked")
        yield

    with store.lease(key, 1):
        store.append(key, "main", [entry("user", "kept")])
        monkeypatch.setattr(store, "_transaction", locked)
    assert texts(store.load(key)) == ["kept"]
    store.close()


# ------------------------------------------------------------------------------------- turns


def history_texts(turn: SessionTurn) -> list[str]:
    return [message.text for message in turn.history]


def test_turn_yields_the_stored_history_and_appends_to_it(store):
    key = unique("s")
    store.append(key, "main", [entry("user", "one"), entry("assistant", "two")])
    with store.turn(key, wait_seconds=1) as turn:
        assert history_texts(turn) == ["one", "two"]
        assert [message.role for message in turn.history] == ["user", "assistant"]
        turn.append("main", [entry("user", "three"), entry("assistant", "four")])
    assert texts(store.load(key)) == ["one", "two", "three", "four"]
    [info] = [s for s in store.list_sessions() if s.key == key]
    assert (info.agent_id, info.message_count) == ("main", 4)


def test_turn_of_a_new_session_has_no_history(store):
    with store.turn(unique("s"), wait_seconds=1) as turn:
        assert list(turn.history) == []


def test_turn_holds_the_lease_and_frees_it_when_done(backend):
    key = unique("s")
    store, other = backend.open(), backend.open()
    with store.turn(key, wait_seconds=1) as turn:
        assert backend.lease_owner(key) is not None
        with pytest.raises(SessionBusy):
            with other.turn(key, wait_seconds=0.2):
                pass
        turn.append("main", [entry("user", "one")])
    assert backend.lease_owner(key) is None
    with other.turn(key, wait_seconds=0) as turn:
        assert history_texts(turn) == ["one"]


def test_turn_that_fails_writes_nothing_and_frees_the_lease(backend):
    key = unique("s")
    store = backend.open()
    with pytest.raises(RuntimeError), store.turn(key, wait_seconds=1):
        raise RuntimeError("the model failed")
    assert store.load(key) == []
    assert backend.lease_owner(key) is None


def test_turn_whose_lease_was_taken_over_leaves_the_new_owners_lease(backend):
    key = unique("s")
    store = backend.open()
    with store.turn(key, wait_seconds=1) as turn:
        # Our lease expired and another run took the session over before we appended.
        backend.plant_lease(key, "new-owner", ttl_seconds=60)
        turn.append("main", [entry("user", "late")])
    assert backend.lease_owner(key) == "new-owner"
