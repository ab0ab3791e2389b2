"""SPEC 4, sessions over HTTP: which key a request lands in, and what a session remembers."""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from tests.cli_run import session_keys, transcript
from tests.conftest import TOKEN, GatewayProcess, base_config, unique, wait_until
from tests.rawhttp import post_chat

RESERVED = "`x-openclaw-session-key` cannot use reserved internal session namespaces."


def _chat(gateway, upstream, text: str, headers: dict[str, str] | None = None, **fields: Any):
    """One non-streaming turn; return what the upstream received as messages."""
    before = len(upstream.requests)
    payload = {"messages": [{"role": "user", "content": text}], **fields}
    response = post_chat(gateway.port, payload, headers)
    assert response.status == 200, response.body
    assert len(upstream.requests) == before + 1
    return [(m["role"], m["content"]) for m in upstream.requests[-1].body["messages"]]


def _pairs(*texts: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for text in texts[:-1]:
        out += [("user", text), ("assistant", f"You said: {text}")]
    return out + [("user", texts[-1])]


# ---- user


def test_second_call_with_same_user_sees_first_exchange_as_messages(gateway, upstream):
    user = unique("user")
    _chat(gateway, upstream, "first", user=user)
    assert _chat(gateway, upstream, "second", user=user) == _pairs("first", "second")


def test_a_session_grows_turn_by_turn(gateway, upstream):
    user = unique("user")
    for text in ("one", "two", "three"):
        _chat(gateway, upstream, text, user=user)
    assert _chat(gateway, upstream, "four", user=user) == _pairs("one", "two", "three", "four")


def test_a_streamed_turn_is_remembered(client, upstream):
    user = unique("user")
    list(
        client.chat.completions.create(
            model="openclaw", user=user, stream=True, messages=[{"role": "user", "content": "s1"}]
        )
    )
    client.chat.completions.create(
        model="openclaw", user=user, messages=[{"role": "user", "content": "s2"}]
    )
    sent = [(m["role"], m["content"]) for m in upstream.requests[-1].body["messages"]]
    assert sent == _pairs("s1", "s2")


def test_different_users_do_not_share_a_session(gateway, upstream):
    _chat(gateway, upstream, "secret of a", user=unique("a"))
    assert _chat(gateway, upstream, "hello", user=unique("b")) == [("user", "hello")]


def test_no_user_means_nothing_is_remembered(gateway, upstream):
    _chat(gateway, upstream, "remember me")
    assert _chat(gateway, upstream, "do you?") == [("user", "do you?")]


def test_blank_user_is_stateless(gateway, upstream):
    _chat(gateway, upstream, "remember me", user="   ")
    assert _chat(gateway, upstream, "do you?", user="   ") == [("user", "do you?")]


def test_the_user_session_is_stored_under_its_key(gateway, upstream):
    user = unique("user")
    _chat(gateway, upstream, "stored", user=user)
    entries = transcript(gateway, f"agent:main:openai-user:{user}")
    assert [(e["role"], e["text"]) for e in entries] == [
        ("user", "stored"),
        ("assistant", "You said: stored"),
    ]


def test_sessions_are_per_agent(gateway, upstream):
    user = unique("user")
    _chat(gateway, upstream, "to main", user=user)
    sent = _chat(gateway, upstream, "to writer", user=user, model="openclaw/writer")
    assert sent == [("system", "You are a careful editor."), ("user", "to writer")]


# ---- stateless keys


def test_stateless_requests_leave_no_row(gateway, upstream):
    marker = unique("stateless")
    _chat(gateway, upstream, marker)
    _chat(gateway, upstream, marker, {"X-OpenWebUI-Task": "title_generation"}, user=marker)
    keys = session_keys(gateway)
    assert not [k for k in keys if ":openai:" in k]
    assert f"agent:main:openai-user:{marker}" not in keys


# ---- client history


def test_client_resent_history_is_not_stored_twice(gateway, upstream):
    user = unique("user")
    _chat(gateway, upstream, "q1", user=user)
    messages = [
        {"role": "user", "content": "q1"},
        {"role": "assistant", "content": "You said: q1"},
        {"role": "user", "content": "q2"},
    ]
    assert post_chat(gateway.port, {"user": user, "messages": messages}).status == 200
    sent = [(m["role"], m["content"]) for m in upstream.requests[-1].body["messages"]]
    assert sent == _pairs("q1", "q2")
    entries = transcript(gateway, f"agent:main:openai-user:{user}")
    assert [e["text"] for e in entries] == ["q1", "You said: q1", "q2", "You said: q2"]


def test_client_history_seeds_a_new_session(gateway, upstream):
    user = unique("user")
    messages = [
        {"role": "user", "content": "earlier"},
        {"role": "assistant", "content": "from another app"},
        {"role": "user", "content": "now"},
    ]
    assert post_chat(gateway.port, {"user": user, "messages": messages}).status == 200
    sent = _chat(gateway, upstream, "next", user=user)
    assert sent == [
        ("user", "earlier"),
        ("assistant", "from another app"),
        ("user", "now"),
        ("assistant", "You said: now"),
        ("user", "next"),
    ]


def test_the_request_system_prompt_is_not_stored(gateway, upstream):
    user = unique("user")
    messages = [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "q"}]
    post_chat(gateway.port, {"user": user, "messages": messages})
    entries = transcript(gateway, f"agent:main:openai-user:{user}")
    assert [e["role"] for e in entries] == ["user", "assistant"]


# ---- x-openclaw-session-key


def test_session_key_header_continues_a_session(gateway, upstream):
    key = unique("key")
    _chat(gateway, upstream, "k1", {"x-openclaw-session-key": key})
    assert _chat(gateway, upstream, "k2", {"x-openclaw-session-key": key}) == _pairs("k1", "k2")


def test_session_key_header_is_trimmed_and_lower_cased(gateway, upstream):
    key = unique("MixedCase").upper()
    _chat(gateway, upstream, "k1", {"x-openclaw-session-key": f"  {key}  "})
    sent = _chat(gateway, upstream, "k2", {"x-openclaw-session-key": key.lower()})
    assert sent == _pairs("k1", "k2")
    assert key.lower() in session_keys(gateway)


def test_session_key_header_wins_over_user(gateway, upstream):
    key, user = unique("key"), unique("user")
    _chat(gateway, upstream, "k1", {"x-openclaw-session-key": key}, user=user)
    assert _chat(gateway, upstream, "u1", user=user) == [("user", "u1")]
    assert _chat(gateway, upstream, "k2", {"x-openclaw-session-key": key}) == _pairs("k1", "k2")


@pytest.mark.parametrize(
    "key", ["subagent:x", "cron:nightly", "acp:abc", "CRON:Upper", "  acp:padded"]
)
def test_reserved_session_key_prefixes_are_400(gateway, key):
    response = post_chat(
        gateway.port,
        {"messages": [{"role": "user", "content": "hi"}]},
        {"x-openclaw-session-key": key},
    )
    assert response.status == 400
    assert response.json()["error"]["message"] == RESERVED


def test_reserved_session_key_is_a_bad_request_in_the_sdk(client):
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(
            model="openclaw",
            messages=[{"role": "user", "content": "hi"}],
            extra_headers={"x-openclaw-session-key": "subagent:main"},
        )


# ---- conversation headers


@pytest.mark.parametrize("header", ["X-OpenWebUI-Chat-Id", "X-Conversation-Id"])
def test_a_conversation_header_continues_a_session(gateway, upstream, header):
    chat_id = unique("chat")
    _chat(gateway, upstream, "c1", {header: chat_id})
    assert _chat(gateway, upstream, "c2", {header: chat_id}) == _pairs("c1", "c2")
    assert f"agent:main:conversation:{chat_id}" in session_keys(gateway)


def test_a_conversation_header_wins_over_user(gateway, upstream):
    chat_id, user = unique("chat"), unique("user")
    _chat(gateway, upstream, "c1", {"X-OpenWebUI-Chat-Id": chat_id}, user=user)
    assert _chat(gateway, upstream, "u1", user=user) == [("user", "u1")]


def test_a_task_request_runs_stateless(gateway, upstream):
    chat_id = unique("chat")
    headers = {"X-OpenWebUI-Chat-Id": chat_id}
    _chat(gateway, upstream, "c1", headers)
    # Title generation: sees the client's messages only, and leaves the conversation alone.
    sent = _chat(
        gateway, upstream, "make a title", {**headers, "X-OpenWebUI-Task": "title_generation"}
    )
    assert sent == [("user", "make a title")]
    assert _chat(gateway, upstream, "c2", headers) == _pairs("c1", "c2")


# ---- concurrent turns


def _concurrently(gateway, upstream, first: dict[str, Any], second: dict[str, Any]) -> None:
    """Send ``first``; once the upstream has it, send ``second``; wait for both."""
    results: list[int] = []

    def send_first() -> None:
        results.append(post_chat(gateway.port, first, timeout=30).status)

    thread = threading.Thread(target=send_first)
    thread.start()
    try:
        upstream.wait_for(lambda u: len(u.requests) >= 1)
        results.append(post_chat(gateway.port, second, timeout=30).status)
    finally:
        thread.join(30)
    assert results == [200, 200]


def test_turns_of_one_session_never_overlap(gateway, upstream):
    user, tag = unique("user"), unique("tag")
    slow = f"[[upstream:slow interval=0.4 chunks=4 text=done_first]] [[tag:{tag}]] one"
    _concurrently(
        gateway,
        upstream,
        {"user": user, "messages": [{"role": "user", "content": slow}]},
        {"user": user, "messages": [{"role": "user", "content": f"[[tag:{tag}]] two"}]},
    )
    assert upstream.max_concurrent[tag] == 1
    # The second turn ran after the first and saw it.
    assert [(m["role"], m["content"]) for m in upstream.requests[-1].body["messages"]] == [
        ("user", slow),
        ("assistant", "done_first"),
        ("user", f"[[tag:{tag}]] two"),
    ]


def test_turns_of_different_sessions_run_side_by_side(gateway, upstream):
    tag = unique("tag")
    slow = f"[[upstream:slow interval=0.4 chunks=4]] [[tag:{tag}]]"
    _concurrently(
        gateway,
        upstream,
        {"user": unique("a"), "messages": [{"role": "user", "content": slow}]},
        {"user": unique("b"), "messages": [{"role": "user", "content": slow}]},
    )
    assert upstream.max_concurrent[tag] == 2


# ---- several workers


@pytest.fixture(scope="module")
def two_worker_gateway(upstream_server, tmp_path_factory) -> Iterator[GatewayProcess]:
    process = GatewayProcess(
        base_config(upstream_server), tmp_path_factory.mktemp("two-workers"), workers=2
    ).start()
    yield process
    process.stop()


def _connection_on_worker(gateway: GatewayProcess, avoid: str | None):
    """A keep-alive connection and the worker (instance id) serving it, not ``avoid``."""

    def attempt():
        conn = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=10)
        conn.request("GET", "/readyz")
        instance = json.loads(conn.getresponse().read())["instance"]
        if instance == avoid:
            conn.close()
            return None
        return conn, instance

    return wait_until(attempt, 20, "a connection accepted by the other worker")


def _turn_on(conn, user: str, text: str) -> None:
    body = json.dumps({"user": user, "messages": [{"role": "user", "content": text}]})
    conn.request("POST", "/v1/chat/completions", body, {"Authorization": f"Bearer {TOKEN}"})
    response = conn.getresponse()
    assert response.status == 200, response.read()
    response.read()


def test_a_session_is_shared_by_the_workers_of_one_host(two_worker_gateway, upstream):
    first, first_worker = _connection_on_worker(two_worker_gateway, None)
    second, second_worker = _connection_on_worker(two_worker_gateway, first_worker)
    assert first_worker != second_worker
    user = unique("user")
    try:
        for n, conn in enumerate([first, second, first, second]):
            _turn_on(conn, user, f"turn{n}")
    finally:
        first.close()
        second.close()
    sent = [(m["role"], m["content"]) for m in upstream.requests[-1].body["messages"]]
    assert sent == _pairs("turn0", "turn1", "turn2", "turn3")
