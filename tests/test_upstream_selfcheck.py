"""Self-checks for the fake upstream in tests/upstream.py (plain http.client, no gateway)."""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from tests.upstream import (
    Upstream,
    count_completion_tokens,
    count_prompt_tokens,
    drop_mid_stream,
    error,
    reply,
    reset_before_headers,
    slow,
    tool_call,
)


@pytest.fixture
def up() -> Iterator[Upstream]:
    server = Upstream().start()
    try:
        yield server
    finally:
        server.stop()


def _conn(up: Upstream) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", up.port, timeout=5)


def _post(
    conn: http.client.HTTPConnection,
    body: dict[str, Any],
    headers: dict[str, str] | None = None,
) -> http.client.HTTPResponse:
    conn.request(
        "POST",
        "/v1/chat/completions",
        body=json.dumps(body),
        headers={"Content-Type": "application/json"} | (headers or {}),
    )
    return conn.getresponse()


def _chat(text: str, stream: bool = False, **extra: Any) -> dict[str, Any]:
    msgs = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": text},
    ]
    return {"model": "m1", "messages": msgs, "stream": stream} | extra


def _events(resp: http.client.HTTPResponse) -> list[str]:
    """Data payloads of an SSE body (http.client undoes the chunked framing)."""
    raw = resp.read().decode()
    return [block[len("data: ") :] for block in raw.split("\n\n") if block.startswith("data: ")]


def test_echo_non_stream_with_usage(up: Upstream) -> None:
    body = _chat("hello there world")
    resp = _post(_conn(up), body)
    assert resp.status == 200
    data = json.loads(resp.read())
    assert data["object"] == "chat.completion"
    assert data["model"] == "m1"
    assert data["choices"][0]["message"] == {
        "role": "assistant",
        "content": "You said: hello there world",
    }
    assert data["choices"][0]["finish_reason"] == "stop"
    prompt = count_prompt_tokens(body["messages"])
    assert prompt == 2 + 3 + 2
    completion = count_completion_tokens("You said: hello there world")
    assert data["usage"] == {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    assert len(up.requests) == 1
    rec = up.requests[0]
    assert (rec.method, rec.path, rec.body) == ("POST", "/v1/chat/completions", body)
    assert rec.headers["content-type"] == "application/json"


def test_echo_list_content_parts(up: Upstream) -> None:
    parts = [
        {"type": "text", "text": "a b"},
        {"type": "image_url", "image_url": {"url": "x"}},
        {"type": "text", "text": "c"},
    ]
    resp = _post(_conn(up), {"model": "m", "messages": [{"role": "user", "content": parts}]})
    assert json.loads(resp.read())["choices"][0]["message"]["content"] == "You said: a b\nc"


def test_echo_stream_with_usage_and_done(up: Upstream) -> None:
    body = _chat("one two three four", stream=True, stream_options={"include_usage": True})
    resp = _post(_conn(up), body)
    assert resp.status == 200
    assert resp.getheader("Content-Type") == "text/event-stream"
    assert resp.getheader("Transfer-Encoding") == "chunked"
    events = _events(resp)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == "m1" for c in chunks)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "You said: one two three four"
    assert len([c for c in chunks if c["choices"] and c["choices"][0]["delta"].get("content")]) == 3
    assert chunks[-2]["choices"][0] == {
        "index": 0,
        "delta": {},
        "finish_reason": "stop",
    }
    assert chunks[-1]["choices"] == []
    prompt, completion = (
        count_prompt_tokens(body["messages"]),
        count_completion_tokens(text),
    )
    assert chunks[-1]["usage"] == {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def test_keep_alive_reuses_connection_and_is_not_a_disconnect(up: Upstream) -> None:
    conn = _conn(up)
    for word in ("first", "second"):
        resp = _post(conn, _chat(word, stream=True))
        assert _events(resp)[-1] == "[DONE]"
    conn.close()
    up.wait_for(lambda u: len(u.requests) == 2)
    assert up.closed_connections == 0


def test_directive_and_tag(up: Upstream) -> None:
    up.script(error(500))  # the directive wins and leaves the queue alone
    resp = _post(_conn(up), _chat("[[tag:t1]] [[upstream:reply text=hello_world]]"))
    assert json.loads(resp.read())["choices"][0]["message"]["content"] == "hello_world"
    assert up.max_concurrent == {"*": 1, "t1": 1}
    assert _post(_conn(up), _chat("hi")).status == 500


def test_directive_error_status(up: Upstream) -> None:
    resp = _post(_conn(up), _chat("[[upstream:error status=503]]"))
    assert resp.status == 503
    assert json.loads(resp.read())["error"]["type"] == "upstream_error"


def test_error_429(up: Upstream) -> None:
    up.script(error(429, "slow down", headers={"Retry-After": "1"}))
    resp = _post(_conn(up), _chat("hi", stream=True))
    assert resp.status == 429
    assert resp.getheader("Retry-After") == "1"
    assert json.loads(resp.read()) == {"error": {"message": "slow down", "type": "upstream_error"}}
    # queue empty again -> echo
    assert _post(_conn(up), _chat("hi")).status == 200


def test_tool_call_stream(up: Upstream) -> None:
    up.script(tool_call("get_weather", '{"city":"Paris"}', call_id="call_9", then=reply("sunny")))
    events = _events(_post(_conn(up), _chat("weather?", stream=True)))
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    first = chunks[0]["choices"][0]["delta"]["tool_calls"][0]
    assert first == {
        "index": 0,
        "id": "call_9",
        "type": "function",
        "function": {"name": "get_weather", "arguments": ""},
    }
    frags = [
        c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"] for c in chunks[1:-1]
    ]
    assert 2 <= len(frags) <= 3
    assert "".join(frags) == '{"city":"Paris"}'
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    # `then` answers the follow-up turn
    follow = _chat("weather?") | {
        "messages": [
            {"role": "user", "content": "weather?"},
            {"role": "tool", "content": "x"},
        ]
    }
    assert (
        json.loads(_post(_conn(up), follow).read())["choices"][0]["message"]["content"] == "sunny"
    )


def test_tool_call_directive_non_stream(up: Upstream) -> None:
    resp = _post(
        _conn(up),
        _chat('[[upstream:tool_call name=get_weather arguments={"city": "Paris"}]]'),
    )
    choice = json.loads(resp.read())["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    call = choice["message"]["tool_calls"][0]
    assert call["function"] == {"name": "get_weather", "arguments": '{"city": "Paris"}'}


def test_drop_mid_stream(up: Upstream) -> None:
    up.script(drop_mid_stream(after_chunks=1))
    resp = _post(_conn(up), _chat("a b c d e f", stream=True))
    assert resp.status == 200
    with pytest.raises(http.client.IncompleteRead) as exc_info:
        resp.read()
    assert b"[DONE]" not in exc_info.value.partial
    assert exc_info.value.partial.count(b'"content"') == 2  # role chunk + one content chunk


def test_reset_before_headers(up: Upstream) -> None:
    up.script(reset_before_headers())
    with pytest.raises((ConnectionResetError, http.client.RemoteDisconnected)):
        _post(_conn(up), _chat("hi"))


def test_client_disconnect_during_slow_is_counted(up: Upstream) -> None:
    up.script(slow(text="a b c d e f g h", chunks=8, interval=1.0))
    conn = _conn(up)
    resp = _post(conn, _chat("hi", stream=True))
    assert resp.status == 200
    assert resp.readline().startswith(b"data: ")  # first event arrived
    up.wait_for(lambda u: u.active_streams == 1)
    resp.close()
    conn.close()
    up.wait_for(lambda u: u.closed_connections == 1, timeout=0.8)  # well before the next 1s write
    up.wait_for(lambda u: u.active_streams == 0)
    assert up.disconnects_during_response == 1


def test_max_concurrent_per_tag(up: Upstream) -> None:
    results: list[int] = []

    def call() -> None:
        resp = _post(
            _conn(up),
            _chat("[[tag:par]] [[upstream:slow chunks=3 interval=0.1]]", stream=True),
        )
        _events(resp)
        results.append(resp.status)

    threads = [threading.Thread(target=call) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert results == [200, 200, 200]
    assert up.max_concurrent["par"] == 3
    assert up.max_concurrent["*"] == 3


def test_models_404_and_messages_stub(up: Upstream) -> None:
    conn = _conn(up)
    conn.request("GET", "/v1/models")
    assert [m["id"] for m in json.loads(conn.getresponse().read())["data"]] == ["echo-model"]
    conn.request("GET", "/v1/nope")
    resp = conn.getresponse()
    assert resp.status == 404 and "error" in json.loads(resp.read())
    conn.request("POST", "/v1/messages", body=b"{}")
    resp = conn.getresponse()
    assert resp.status == 400  # Anthropic Messages needs `messages`
    resp.read()
    conn.request("POST", "/v1/chat/completions", body=b"{not json")
    resp = conn.getresponse()
    assert resp.status == 400
    resp.read()
    up.clear()
    assert up.requests == [] and up.max_concurrent == {"*": 0}
