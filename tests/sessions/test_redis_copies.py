"""The Redis store's per-process copies of transcripts: a turn fetches only what it has not seen,
and whatever another process did to the session (append, delete, rewrite) is seen anyway.

Each ``RedisSessionStore`` plays one gateway process; they share one real Redis.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest
import redis

from openclaw_gateway.agent.types import Message
from openclaw_gateway.sessions.cache import TranscriptCache, TranscriptCopy
from openclaw_gateway.sessions.redis import RedisSessionStore
from tests.conftest import unique
from tests.sessions.conftest import RedisBackend


@pytest.fixture
def backend(redis_url: str, redis_prefix: str, raw_redis: redis.Redis) -> RedisBackend:
    return RedisBackend(redis_url, redis_prefix + uuid.uuid4().hex[:8] + ":", raw_redis)


@pytest.fixture
def stores(backend: RedisBackend) -> Iterator[tuple[RedisSessionStore, RedisSessionStore]]:
    """Two processes sharing the session store."""
    first, second = backend.open(), backend.open()
    yield first, second
    first.close()
    second.close()


def entry(role: str, text: str) -> dict[str, object]:
    return {"role": role, "text": text, "timestamp": 1, "run_id": uuid.uuid4().hex}


def exchange(text: str) -> list[dict[str, object]]:
    return [entry("user", text), entry("assistant", f"re: {text}")]


def take_turn(store: RedisSessionStore, key: str, text: str) -> list[Message]:
    """One turn: the history it was given, then its exchange appended."""
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
    # The entries a had were not fetched again: its parsed messages are the very same objects.
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


def test_turn_sees_a_transcript_that_lost_entries_and_grew_again(stores, backend):
    a, b = stores
    key = unique("s")
    take_turn(a, key, "one")
    take_turn(a, key, "two")
    # A failover that lost the last turn: same transcript id, shorter list; then others write.
    backend.client.ltrim(f"{backend.prefix}transcript:{key}", 0, 1)
    take_turn(b, key, "three")
    take_turn(b, key, "four")
    expected = ["one", "re: one", "three", "re: three", "four", "re: four"]
    assert texts(take_turn(a, key, "five")) == expected


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


def test_turn_reads_a_transcript_stored_before_transcript_ids(stores, backend):
    a, b = stores
    key = unique("s")
    # What an earlier version wrote: the list and the index hash, no transcriptId.
    backend.client.rpush(
        f"{backend.prefix}transcript:{key}",
        *(json.dumps(e) for e in exchange("legacy")),
    )
    backend.client.hset(
        f"{backend.prefix}session:{key}",
        mapping={"agentId": "main", "messageCount": 2, "updatedAt": 1},
    )
    assert texts(take_turn(a, key, "one")) == ["legacy", "re: legacy"]
    take_turn(b, key, "two")
    expected = ["legacy", "re: legacy", "one", "re: one", "two", "re: two"]
    assert texts(take_turn(a, key, "three")) == expected
    assert [s.message_count for s in a.list_sessions() if s.key == key] == [8]


def test_load_returns_the_whole_transcript_whatever_the_copies(stores):
    a, b = stores
    key = unique("s")
    take_turn(a, key, "one")
    take_turn(b, key, "two")
    loaded = a.load(key)
    assert [e["text"] for e in loaded] == ["one", "re: one", "two", "re: two"]
    assert loaded[0]["run_id"]


def copy_of(size: int) -> TranscriptCopy:
    return TranscriptCopy("id", (Message("user", "x"),), "{}", size)


def test_copies_are_bounded_by_size_and_the_least_recently_used_go_first():
    cache = TranscriptCache(max_size=100)
    cache.put("a", copy_of(40))
    cache.put("b", copy_of(40))
    assert cache.get("a") is not None  # now the most recently used
    cache.put("c", copy_of(40))
    assert cache.get("b") is None
    assert cache.get("a") is not None
    assert cache.get("c") is not None
    cache.put("huge", copy_of(101))
    assert cache.get("huge") is None
    assert len(cache) == 2
