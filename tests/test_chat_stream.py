"""SPEC 3, streaming: exact SSE framing on a raw socket, keepalive, errors after the headers,
and a client that leaves mid-run (stream or not) cancelling the run."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.cli_run import transcript
from tests.conftest import GatewayProcess, base_config, free_port, unique
from tests.rawhttp import SseStream, connect, post_chat, request_bytes
from tests.upstream import (
    count_completion_tokens,
    count_prompt_tokens,
    error,
    reply,
    tool_call,
)

HI = [{"role": "user", "content": "hi"}]
STREAM_HEADERS = {
    "content-type": "text/event-stream; charset=utf-8",
    "cache-control": "no-cache",
    "x-accel-buffering": "no",
}


@pytest.fixture(scope="module")
def stream_gateway(upstream_server, tmp_path_factory) -> Iterator[GatewayProcess]:
    """Keepalive every 0.2 s; agents ``impatient`` (0.3 s upstream timeout) and ``dead``."""
    config = base_config(upstream_server)
    config["gateway"]["http"]["endpoints"]["chatCompletions"]["keepaliveSeconds"] = 0.2
    providers = config["models"]["providers"]
    providers["impatient"] = {**providers["up"], "timeoutSeconds": 0.3}
    providers["dead"] = {"baseUrl": f"http://127.0.0.1:{free_port()}/v1", "models": ["m"]}
    config["agents"]["list"] += [
        {"id": "impatient", "model": "impatient/echo-model"},
        {"id": "dead", "model": "dead/m"},
    ]
    process = GatewayProcess(config, tmp_path_factory.mktemp("stream")).start()
    yield process
    process.stop()


def _stream(gateway: GatewayProcess, payload: dict[str, Any], **headers: str) -> SseStream:
    return SseStream(gateway.port, {"stream": True, "messages": HI, **payload}, headers)


def _data(event: bytes) -> Any:
    assert event.startswith(b"data: "), event
    raw = event[len(b"data: ") :]
    if raw == b"[DONE]":
        return "[DONE]"
    value = json.loads(raw)
    # Compact JSON: exactly what json.dumps with (",", ":") writes, nothing more.
    assert raw == json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
    return value


def _all(gateway: GatewayProcess, payload: dict[str, Any], **headers: str) -> list[Any]:
    with _stream(gateway, payload, **headers) as stream:
        assert stream.status == 200
        return [_data(e) for e in stream.rest() if not e.startswith(b":")]


def _text(chunks: list[Any]) -> str:
    return "".join(
        c["choices"][0]["delta"].get("content", "")
        for c in chunks
        if isinstance(c, dict) and c.get("choices")
    )


# ---- framing


def test_stream_headers(gateway, upstream):
    payload = {"stream": True, "messages": HI}
    with SseStream(gateway.port, payload, keep_alive=True) as stream:
        assert stream.status == 200
        for name, value in STREAM_HEADERS.items():
            assert stream.headers[name] == value
        # HTTP/1.1 keeps the connection open unless told otherwise.
        assert stream.headers.get("connection", "keep-alive").lower() == "keep-alive"
        stream.rest()


def test_every_event_is_data_compact_json_and_a_blank_line(gateway, upstream):
    with _stream(gateway, {"messages": [{"role": "user", "content": "a b c d e"}]}) as stream:
        events = stream.rest()
        assert stream.raw == b"".join(e + b"\n\n" for e in events)
    assert all(e.startswith(b"data: ") and b"\n" not in e for e in events)
    for event in events:
        _data(event)


def test_role_chunk_first_then_content_then_finish_then_done(gateway, upstream):
    chunks = _all(
        gateway, {"model": "openclaw", "messages": [{"role": "user", "content": "x y z"}]}
    )
    first, *content, finish, done = chunks
    assert first == {
        "id": first["id"],
        "object": "chat.completion.chunk",
        "created": first["created"],
        "model": "openclaw",
        "choices": [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}],
    }
    assert first["id"].startswith("chatcmpl_")
    assert content
    for chunk in content:
        assert chunk["choices"] == [
            {
                "index": 0,
                "delta": {"content": chunk["choices"][0]["delta"]["content"]},
                "finish_reason": None,
            }
        ]
    assert _text(content) == "You said: x y z"
    assert finish["choices"] == [{"index": 0, "delta": {}, "finish_reason": "stop"}]
    assert done == "[DONE]"


def test_content_chunks_follow_the_upstream_chunks(gateway, upstream):
    upstream.script(reply("alpha beta gamma delta", chunks=4))
    chunks = _all(gateway, {})
    pieces = [c["choices"][0]["delta"]["content"] for c in chunks[1:-2]]
    assert pieces == ["alpha ", "beta ", "gamma ", "delta"]


def test_every_chunk_has_the_same_id_created_and_model(gateway, upstream):
    chunks = _all(gateway, {"model": "OpenClaw/Writer"})[:-1]
    assert {(c["id"], c["created"], c["model"], c["object"]) for c in chunks} == {
        (chunks[0]["id"], chunks[0]["created"], "OpenClaw/Writer", "chat.completion.chunk")
    }


def test_no_usage_chunk_unless_asked(gateway, upstream):
    chunks = _all(gateway, {})
    assert all("usage" not in c for c in chunks[:-1])
    assert all(c["choices"] for c in chunks[:-1])


def test_include_usage_adds_a_usage_chunk_before_done(gateway, upstream):
    chunks = _all(gateway, {"stream_options": {"include_usage": True}})
    *_, finish, usage_chunk, done = chunks
    assert finish["choices"][0]["finish_reason"] == "stop"
    assert done == "[DONE]"
    prompt = count_prompt_tokens(upstream.requests[-1].body["messages"])
    completion = count_completion_tokens("You said: hi")
    assert usage_chunk == {
        "id": finish["id"],
        "object": "chat.completion.chunk",
        "created": finish["created"],
        "model": "openclaw",
        "choices": [],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        },
    }


def test_include_usage_false_adds_nothing(gateway, upstream):
    chunks = _all(gateway, {"stream_options": {"include_usage": False}})
    assert all("usage" not in c for c in chunks[:-1])


def test_finish_reason_length_streams_through(gateway, upstream):
    upstream.script(reply("partial", finish_reason="length"))
    chunks = _all(gateway, {})
    assert chunks[-2]["choices"] == [{"index": 0, "delta": {}, "finish_reason": "length"}]


def test_empty_reply_streams_no_response_from_openclaw(gateway, upstream):
    upstream.script(reply(""))
    assert _text(_all(gateway, {})) == "No response from OpenClaw."


def test_client_tool_calls_stream_as_head_then_argument_fragments(gateway, upstream):
    arguments = '{"query": "weather in Paris"}'
    upstream.script(tool_call("lookup", arguments, call_id="call_7"))
    tools = [{"type": "function", "function": {"name": "lookup"}}]
    chunks = _all(gateway, {"tools": tools})
    deltas = [c["choices"][0]["delta"] for c in chunks[1:-2]]
    assert deltas[0] == {
        "tool_calls": [
            {
                "index": 0,
                "id": "call_7",
                "type": "function",
                "function": {"name": "lookup", "arguments": ""},
            }
        ]
    }
    fragments = [d["tool_calls"][0] for d in deltas[1:]]
    assert all(set(f) == {"index", "function"} and f["index"] == 0 for f in fragments)
    assert "".join(f["function"]["arguments"] for f in fragments) == arguments
    assert chunks[-2]["choices"] == [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]


def test_the_role_chunk_comes_before_the_upstream_answers(gateway, upstream):
    payload = {"messages": [{"role": "user", "content": "[[upstream:stall seconds=20]]"}]}
    with _stream(gateway, payload) as stream:
        first = _data(stream.next_event())
        assert first["choices"][0]["delta"] == {"role": "assistant"}
        upstream.wait_for(lambda u: len(u.requests) == 1)
    # The upstream was still stalled, without a byte sent, when the client left.
    upstream.wait_for(lambda u: u.closed_connections >= 1)


def test_sdk_stream_with_usage(client, upstream):
    stream = client.chat.completions.create(
        model="openclaw",
        stream=True,
        stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "count these words"}],
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == (
        "You said: count these words"
    )
    assert chunks[-1].choices == []
    assert chunks[-1].usage.completion_tokens == count_completion_tokens(
        "You said: count these words"
    )


# ---- keepalive


def test_ping_comments_while_the_upstream_is_slow(stream_gateway, upstream):
    content = "[[upstream:slow interval=0.5 chunks=3 text=one_two_three]]"
    with _stream(stream_gateway, {"messages": [{"role": "user", "content": content}]}) as stream:
        events = stream.rest()
    pings = [e for e in events if e.startswith(b":")]
    assert pings and set(pings) == {b": ping"}
    data = [_data(e) for e in events if not e.startswith(b":")]
    assert _text(data) == "one_two_three"
    assert data[-1] == "[DONE]"


def test_ping_before_the_first_token(stream_gateway, upstream):
    content = "[[upstream:stall seconds=20]] hello"
    with _stream(stream_gateway, {"messages": [{"role": "user", "content": content}]}) as stream:
        assert _data(stream.next_event())["choices"][0]["delta"] == {"role": "assistant"}
        assert stream.next_event() == b": ping"
        assert stream.next_event() == b": ping"
    # The upstream had sent nothing yet: it sees the stream abandoned mid-stall.
    upstream.wait_for(lambda u: u.closed_connections >= 1)


# ---- errors after the headers


def _error_tail(chunks: list[Any]) -> dict[str, Any]:
    assert chunks[-1] == "[DONE]"
    err = chunks[-2]
    assert set(err) == {"error"}
    assert err["error"]["type"] == "api_error"
    return err["error"]


def test_upstream_drop_mid_stream_is_an_error_event_then_done(gateway, upstream):
    chunks = _all(
        gateway,
        {"messages": [{"role": "user", "content": "[[upstream:drop after_chunks=1]] a b c"}]},
    )
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant"}
    assert _text(chunks[1:-2])
    assert _error_tail(chunks)["message"] == "The model provider closed the connection."


def test_upstream_429_in_a_stream_is_an_error_event(gateway, upstream):
    upstream.script(error(429))
    with _stream(gateway, {}) as stream:
        assert stream.status == 200
        chunks = [_data(e) for e in stream.rest()]
    assert len(chunks) == 3
    assert _error_tail(chunks)["message"] == "The model provider is rate limiting requests."


def test_upstream_timeout_mid_stream_is_an_error_event(stream_gateway, upstream):
    payload = {
        "model": "openclaw/impatient",
        "messages": [
            {"role": "user", "content": "[[upstream:stall_after_first_chunk seconds=10]] a b c"}
        ],
    }
    chunks = _all(stream_gateway, payload)
    assert _text(chunks[1:-2])
    assert _error_tail(chunks)["message"] == "The model provider timed out."


def test_unreachable_upstream_in_a_stream_is_an_error_event(stream_gateway):
    chunks = _all(stream_gateway, {"model": "openclaw/dead"})
    assert [c for c in chunks if c != "[DONE]" and "choices" in c][0]["choices"][0]["delta"] == {
        "role": "assistant"
    }
    assert _error_tail(chunks)["message"] == "The model provider could not be reached."


def test_a_failed_stream_stores_nothing(gateway, upstream):
    user = unique("failed")
    _all(
        gateway,
        {
            "user": user,
            "messages": [{"role": "user", "content": "[[upstream:drop after_chunks=1]]"}],
        },
    )
    assert transcript(gateway, f"agent:main:openai-user:{user}") == []


# ---- client disconnect


def test_a_client_leaving_mid_stream_closes_the_upstream_and_stores_nothing(gateway, upstream):
    user = unique("gone")
    content = "[[upstream:slow interval=0.3 chunks=20 text=abcdefghijklmnopqrstuvwxyz]]"
    with _stream(gateway, {"user": user, "messages": [{"role": "user", "content": content}]}) as s:
        assert _data(s.next_event())["choices"][0]["delta"] == {"role": "assistant"}
        assert _data(s.next_event())["choices"][0]["delta"]["content"]
    upstream.wait_for(lambda u: u.closed_connections >= 1)
    assert transcript(gateway, f"agent:main:openai-user:{user}") == []
    # The next turn of that session sees no trace of the abandoned one.
    post_chat(gateway.port, {"user": user, "messages": [{"role": "user", "content": "again"}]})
    assert upstream.requests[-1].body["messages"] == [{"role": "user", "content": "again"}]


def test_a_non_streaming_client_leaving_cancels_the_run(gateway, upstream):
    user = unique("gone-json")
    content = "[[upstream:slow interval=0.3 chunks=20 text=abcdefghijklmnopqrstuvwxyz]]"
    payload = {"user": user, "messages": [{"role": "user", "content": content}]}
    headers = {"Authorization": "Bearer test-token"}
    with connect(gateway.port) as sock:
        sock.sendall(
            request_bytes("POST", "/v1/chat/completions", headers, json.dumps(payload).encode())
        )
        upstream.wait_for(lambda u: len(u.requests) >= 1)
    upstream.wait_for(lambda u: u.closed_connections >= 1)
    post_chat(gateway.port, {"user": user, "messages": [{"role": "user", "content": "again"}]})
    assert upstream.requests[-1].body["messages"] == [{"role": "user", "content": "again"}]
    assert [e["text"] for e in transcript(gateway, f"agent:main:openai-user:{user}")] == [
        "again",
        "You said: again",
    ]


def test_the_gateway_serves_on_after_clients_leave(gateway, upstream):
    stall = {"messages": [{"role": "user", "content": "[[upstream:stall seconds=20]]"}]}
    for n in range(1, 4):
        with _stream(gateway, stall) as s:
            s.next_event()
            upstream.wait_for(lambda u, n=n: len(u.requests) == n)
    upstream.wait_for(lambda u: u.closed_connections >= 3)
    assert _text(_all(gateway, {})) == "You said: hi"
