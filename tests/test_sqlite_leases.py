"""SQLite session leases: one statement per take/extend/release, one heartbeat per process."""

from __future__ import annotations

import time

import pytest

from openclaw_gateway.agent.errors import SessionBusy
from openclaw_gateway.sessions.sqlite import SqliteSessionStore


@pytest.fixture
def store(tmp_path):
    store = SqliteSessionStore(str(tmp_path / "sessions.sqlite3"), lease_ttl_seconds=0.3)
    yield store
    store.close()


def test_held_lease_refuses_a_second_owner_until_released(store):
    with store.lease("agent:main:openai-user:a", 1):
        with pytest.raises(SessionBusy):
            with store.lease("agent:main:openai-user:a", 0.05):
                pass
    with store.lease("agent:main:openai-user:a", 0.05):
        pass


def test_expired_lease_of_a_dead_owner_can_be_taken(store):
    assert store._take_lease("agent:main:openai-user:b", "dead-owner")
    time.sleep(0.35)  # the dead owner's lease runs out (nothing extends it)
    with store.lease("agent:main:openai-user:b", 0.05):
        pass


def test_heartbeat_keeps_a_long_run_lease_past_its_ttl(store):
    with store.lease("agent:main:openai-user:c", 1):
        time.sleep(1.0)  # over three TTLs: only the heartbeat keeps the lease alive
        assert not store._take_lease("agent:main:openai-user:c", "someone-else")


def test_transcript_loads_entries_in_order(store):
    entries = [{"role": "user", "text": f"m{i}", "n": i} for i in range(30)]
    store.append("agent:main:openai-user:d", "main", entries[:10])
    store.append("agent:main:openai-user:d", "main", entries[10:])
    assert store.load("agent:main:openai-user:d") == entries
    assert store.load("agent:main:openai-user:none") == []


def test_one_heartbeat_keeps_every_held_lease_then_stops(store):
    from tests.conftest import wait_until

    with store.lease("agent:main:openai-user:e", 1):
        time.sleep(0.2)  # the beat is running for the first lease when the second is taken
        with store.lease("agent:main:openai-user:f", 1):
            time.sleep(1.0)  # over three TTLs for both
            assert not store._take_lease("agent:main:openai-user:e", "someone-else")
            assert not store._take_lease("agent:main:openai-user:f", "someone-else")
    # Nothing held: the beat ends (and a later lease starts it again).
    wait_until(lambda: store.heartbeat._thread is None, 2, "the heartbeat to stop")
    with store.lease("agent:main:openai-user:e", 1):
        time.sleep(0.5)
        assert not store._take_lease("agent:main:openai-user:e", "someone-else")
