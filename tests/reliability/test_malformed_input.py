"""Malformed input against the live gateway: every answer is documented, the worker stays up.

Property-based (hypothesis, derandomized in CI): wrong types at every field of a chat request,
arbitrary and deeply nested JSON, invalid UTF-8 and NUL bytes, odd and enormous headers, broken
request lines, truncated and slow bodies, slowloris-style connections. Every example is followed
by a normal request that must succeed, and each test checks the worker's pid before and after.

WebSocket frame fuzzing is in ``test_malformed_ws.py`` beside this file (the same ``examples()``,
``rel_gateway`` and ``worker_stays_up``).
"""

from __future__ import annotations

import copy
import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import wait_until
from tests.reliability.conftest import RelGateway, examples, scale
from tests.reliability.contract import assert_documented, assert_envelope
from tests.reliability.figures import Figures
from tests.reliability.wire import http_request, raw_exchange

PNG_1PX = (
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"
    "+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)
# A request that uses every field the gateway reads, so each can be replaced by a wrong one.
FULL_REQUEST: dict[str, Any] = {
    "model": "openclaw",
    "messages": [
        {"role": "system", "content": "be brief"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "look"},
                {"type": "image_url", "image_url": {"url": PNG_1PX}},
            ],
        },
        {
            "role": "assistant",
            "content": "calling",
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "42"},
        {"role": "user", "content": "and now?"},
    ],
    "stream": False,
    "stream_options": {"include_usage": True},
    "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
    "tool_choice": "auto",
    "max_tokens": 50,
    "max_completion_tokens": 60,
    "temperature": 0.5,
    "top_p": 0.9,
    "presence_penalty": 0,
    "frequency_penalty": 0,
    "seed": 7,
    "stop": ["\n\n"],
    "response_format": {"type": "text"},
    "n": 1,
}


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, prefix + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, prefix + (index,))


FIELD_PATHS = [p for p in _paths(FULL_REQUEST) if p]

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()  # NaN and Infinity included: Python's json reads them
    | st.text(max_size=40)
    | st.sampled_from(["", " ", "\x00", "openclaw", "user", "image_url", "function", "data:,"])
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def _replace(body: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    body = copy.deepcopy(body)
    target = body
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return body


def _post(gw: RelGateway, body: bytes, headers: dict[str, str] | None = None) -> None:
    answer = gw.client.request("POST", "/v1/chat/completions", body, headers)
    assert_documented(answer)
    gw.assert_normal_request_succeeds()


# --------------------------------------------------------------------------- bodies


@examples(700)
@given(path=st.sampled_from(FIELD_PATHS), value=json_values, stream=st.booleans())
def test_wrong_value_at_any_chat_field_gets_a_documented_answer(
    worker_stays_up: RelGateway, figures: Figures, path: tuple[Any, ...], value: Any, stream: bool
) -> None:
    figures.tried("body: wrong value at a field")
    body = _replace(dict(FULL_REQUEST, stream=stream), path, value)
    _post(worker_stays_up, json.dumps(body).encode())


@examples(250)
@given(document=json_values)
def test_any_json_document_as_body_gets_a_documented_answer(
    worker_stays_up: RelGateway, figures: Figures, document: Any
) -> None:
    figures.tried("body: arbitrary JSON")
    _post(worker_stays_up, json.dumps(document).encode())


_VALID = json.dumps(FULL_REQUEST).encode()
_BAD_BYTES = [b"\x00", b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\x80", b"\\"]
_BAD_ESCAPES = [b"\\ud800", b"\\udfff", b"\\ud83d", b"\\u0000", b"\\x41", b"\\u12"]


@st.composite
def mangled_bodies(draw: st.DrawFn) -> bytes:
    """Draw a valid body with bytes inserted, an escape spliced in, or cut short; or noise."""
    kind = draw(st.sampled_from(["insert", "escape", "truncate", "noise"]))
    if kind == "noise":
        return draw(st.binary(max_size=300))
    at = draw(st.integers(0, len(_VALID)))
    if kind == "truncate":
        return _VALID[:at]
    if kind == "escape":
        escape = draw(st.sampled_from(_BAD_ESCAPES))
        # Inside the last user message's string, so the escape reaches the run if it parses.
        return _VALID.replace(b"and now?", b"and " + escape + b" now?")
    return _VALID[:at] + draw(st.sampled_from(_BAD_BYTES)) + _VALID[at:]


@examples(300)
@given(body=mangled_bodies())
def test_invalid_utf8_nul_bytes_and_cut_bodies_get_a_documented_answer(
    worker_stays_up: RelGateway, figures: Figures, body: bytes
) -> None:
    figures.tried("body: bytes, escapes, truncation")
    _post(worker_stays_up, body)


@examples(60)
@given(
    depth=st.integers(1, 200_000),
    opener=st.sampled_from([b"[", b'{"a":', b'{"messages":[']),
    closed=st.booleans(),
)
def test_deeply_nested_json_gets_a_documented_answer(
    worker_stays_up: RelGateway, figures: Figures, depth: int, opener: bytes, closed: bool
) -> None:
    figures.tried("body: deep nesting")
    closer = {b"[": b"]", b'{"a":': b"}", b'{"messages":[': b"]}"}[opener]
    body = opener * depth + b"1" + (closer * depth if closed else b"")
    _post(worker_stays_up, body)


@examples(80)
@given(
    where=st.sampled_from(
        [
            ("tools", 0, "function", "parameters"),
            ("response_format", "schema"),
            ("messages", 2, "tool_calls", 0, "function", "arguments"),
            ("stop",),
            ("messages", 4, "content"),
        ]
    ),
    depth=st.integers(1, 3000),
    stream=st.booleans(),
)
def test_deep_nesting_inside_a_field_gets_a_documented_answer(
    worker_stays_up: RelGateway, figures: Figures, where: tuple[Any, ...], depth: int, stream: bool
) -> None:
    figures.tried("body: deep nesting in a field")
    marker = "NESTED"
    body = json.dumps(_replace(dict(FULL_REQUEST, stream=stream), where, marker)).encode()
    nested = b'{"a":' * depth + b"1" + b"}" * depth
    _post(worker_stays_up, body.replace(b'"NESTED"', nested))


def test_huge_bodies_get_a_documented_answer(worker_stays_up: RelGateway, figures: Figures) -> None:
    gw = worker_stays_up
    figures.tried("body: huge", 4)
    big_text = "x" * (5 * 1024 * 1024)
    ok = gw.client.chat({"model": "openclaw", "messages": [{"role": "user", "content": big_text}]})
    assert ok.status == 200, ok
    many = [{"role": "user" if i % 2 else "assistant", "content": f"m{i}"} for i in range(20_000)]
    many.append({"role": "user", "content": "last"})
    wide = gw.client.chat({"model": "openclaw/local", "messages": many})
    assert wide.status == 200, wide
    too_big = b'{"messages": "' + b"x" * (21 * 1024 * 1024) + b'"}'
    refused = gw.client.request("POST", "/v1/chat/completions", too_big)
    assert_envelope(refused, 413)
    assert refused.headers.get("connection") == "close"
    declared = raw_exchange(
        gw.port,
        http_request(
            "POST",
            "/v1/chat/completions",
            [
                (b"Authorization", f"Bearer {gw.token}".encode()),
                (b"Content-Length", b"99999999999"),
            ],
            content_length=False,
        ),
        figures,
    )
    assert declared is not None
    assert_envelope(declared, 413)


# --------------------------------------------------------------------------- headers

header_bytes = st.binary(max_size=200).map(
    lambda b: b.replace(b"\r", b"").replace(b"\n", b"").strip()
)
header_text = st.text(max_size=80).map(
    lambda s: s.encode("utf-8", "surrogatepass").replace(b"\r", b"").replace(b"\n", b"").strip()
)


@st.composite
def authorizations(draw: st.DrawFn, token: str) -> bytes:
    return draw(
        st.sampled_from(
            [
                b"",
                b"Bearer",
                b"Bearer ",
                b"bearer " + token.encode(),
                b"BEARER   " + token.encode() + b"   ",
                b"Basic " + token.encode(),
                b"Bearer " + token.encode()[:-1],
                b"Bearer " + token.encode() + b"x",
                b"Bearer " + token.encode() + b"\x00",
                b"Bearer \xff\xfe",
                b"Bearer " + b"A" * 60_000,
            ]
        )
        | header_bytes.map(lambda v: b"Bearer " + v)
        | header_bytes
        | header_text
    )


@examples(400)
@given(data=st.data())
def test_odd_headers_get_a_documented_answer(
    worker_stays_up: RelGateway, figures: Figures, data: st.DataObject
) -> None:
    gw = worker_stays_up
    figures.tried("headers: auth, session, agent, model, ids")
    good_auth = b"Bearer " + gw.token.encode()
    headers = [(b"Authorization", data.draw(authorizations(gw.token) | st.just(good_auth)))]
    for name in (
        b"x-openclaw-session-key",
        b"x-openclaw-agent-id",
        b"x-openclaw-model",
        b"X-Conversation-Id",
        b"X-OpenWebUI-Chat-Id",
        b"X-OpenWebUI-Task",
        b"X-Request-ID",
        b"X-Forwarded-For",
        b"Content-Type",
    ):
        if data.draw(st.booleans()):
            value = data.draw(
                header_bytes
                | header_text
                | st.sampled_from([b"subagent:x", b"cron:x", b"acp:", b"  KEY  ", b"main"])
            )
            headers.append((name, value))
    body = json.dumps(
        {"model": "openclaw", "messages": [{"role": "user", "content": "header fuzz"}]}
    ).encode()
    answer = raw_exchange(gw.port, http_request("POST", "/v1/chat/completions", headers, body))
    assert answer is not None, "the server closed without answering"
    figures.observe(answer)
    assert_documented(answer)
    gw.assert_normal_request_succeeds()


@pytest.mark.parametrize(
    "size", [8 * 1024, 60 * 1024, 70 * 1024, 1024 * 1024], ids=["8k", "60k", "70k", "1m"]
)
def test_enormous_headers_get_a_documented_answer(
    worker_stays_up: RelGateway, figures: Figures, size: int
) -> None:
    gw = worker_stays_up
    figures.tried("headers: enormous")
    headers = [
        (b"Authorization", f"Bearer {gw.token}".encode()),
        (b"X-Filler", b"f" * size),
    ]
    answer = raw_exchange(gw.port, http_request("GET", "/v1/models", headers), figures)
    # Up to 64 KiB a line is a header like any other; beyond, gevent's pywsgi answers 400.
    assert answer is not None
    assert_documented(answer)
    assert answer.status == (200 if size < 64 * 1024 else 400), answer


def test_many_headers_get_a_documented_answer(
    worker_stays_up: RelGateway, figures: Figures
) -> None:
    gw = worker_stays_up
    figures.tried("headers: many")
    headers = [(b"Authorization", f"Bearer {gw.token}".encode())]
    headers += [(b"X-H%d" % i, b"v") for i in range(500)]
    answer = raw_exchange(gw.port, http_request("GET", "/v1/models", headers), figures)
    assert answer is not None
    assert_documented(answer)


# --------------------------------------------------------------------------- request lines

methods = st.sampled_from(
    ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "TRACE", "CONNECT", "BREW"]
)
paths = st.sampled_from(
    [
        "/v1/chat/completions",
        "/v1/chat/completions/",
        "/v1/models",
        "/v1/models/openclaw%2Fmain",
        "/v1/models/%ff%00",
        "/health",
        "/readyz",
        "/debug/runtime",
        "/",
        "//v1/models",
        "/v1/../v1/models",
        "*",
        "/v1/models?x=%zz",
    ]
) | st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=60).map(
    lambda s: "/" + s
)


@st.composite
def raw_requests(draw: st.DrawFn, token: str) -> bytes:
    method = draw(methods)
    path = draw(paths)
    version = draw(st.sampled_from(["HTTP/1.1", "HTTP/1.0", "HTTP/2.0", "HTTP/1.1x", "", "http"]))
    line = f"{method} {path} {version}".encode("latin-1")
    if draw(st.integers(0, 9)) == 0:
        line = draw(st.binary(max_size=120)).replace(b"\n", b"")
    if draw(st.integers(0, 20)) == 0:
        line = b"GET /" + b"a" * 9000 + b" HTTP/1.1"
    headers = [b"Host: x", b"Authorization: Bearer " + token.encode()]
    body = json.dumps({"messages": [{"role": "user", "content": "raw"}]}).encode()
    framing = draw(
        st.sampled_from(
            ["length", "none", "negative", "huge", "dup", "chunked", "bad-chunk", "both", "junk"]
        )
    )
    if framing == "length":
        headers.append(b"Content-Length: %d" % len(body))
    elif framing == "negative":
        headers.append(b"Content-Length: -5")
    elif framing == "huge":
        headers.append(b"Content-Length: 1e9")
    elif framing == "dup":
        headers += [b"Content-Length: %d" % len(body), b"Content-Length: 3"]
    elif framing in ("chunked", "both"):
        headers.append(b"Transfer-Encoding: chunked")
        if framing == "both":
            headers.append(b"Content-Length: 4")
        body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    elif framing == "bad-chunk":
        headers.append(b"Transfer-Encoding: chunked")
        body = b"zz\r\n" + body + b"\r\n"
    elif framing == "junk":
        headers.append(draw(header_bytes) + b": " + draw(header_bytes))
    headers.append(b"Connection: close")
    return line + b"\r\n" + b"\r\n".join(headers) + b"\r\n\r\n" + body


@examples(300)
@given(data=st.data())
def test_broken_request_lines_and_framing_get_a_documented_answer(
    worker_stays_up: RelGateway, figures: Figures, data: st.DataObject
) -> None:
    gw = worker_stays_up
    figures.tried("raw: request line, framing")
    request = data.draw(raw_requests(gw.token))
    # Half-close: a request whose framing promises more body than sent must still end.
    answer = raw_exchange(gw.port, request, figures, half_close=True)
    if answer is not None:
        assert_documented(answer, half_closed=True)
    gw.assert_normal_request_succeeds()


# --------------------------------------------------------------------------- slow clients


def _chat_bytes(gw: RelGateway, content: str) -> bytes:
    body = json.dumps(
        {"model": "openclaw/local", "messages": [{"role": "user", "content": content}]}
    )
    return http_request(
        "POST",
        "/v1/chat/completions",
        [(b"Authorization", f"Bearer {gw.token}".encode())],
        body.encode(),
    )


def test_slow_body_is_read_to_the_end_and_answered(
    worker_stays_up: RelGateway, figures: Figures
) -> None:
    gw = worker_stays_up
    figures.tried("slow: body")
    request = _chat_bytes(gw, "slowly")
    head, _, body = request.partition(b"\r\n\r\n")
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as sock:
        sock.sendall(head + b"\r\n\r\n")
        for i in range(0, len(body), 7):
            sock.sendall(body[i : i + 7])
            time.sleep(0.02)  # pacing the client, not waiting for a condition
        response = sock.makefile("rb").read()
    assert response.startswith(b"HTTP/1.1 200"), response[:200]
    assert b"echo: slowly" in response


def test_slowloris_connections_do_not_starve_normal_requests(
    worker_stays_up: RelGateway, figures: Figures
) -> None:
    gw = worker_stays_up
    count = scale(150, 900)
    figures.tried("slow: slowloris connections", count)
    baseline = gw.runtime()["greenlets"]
    socks = []
    try:
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
            sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-A: ")
            socks.append(sock)
        for sock in socks:
            sock.sendall(b"a")  # a trickle, never finishing the header block
        wait_until(lambda: gw.runtime()["greenlets"] >= baseline + count, 10, "slow sockets held")
        gw.assert_normal_request_succeeds()
        answer = raw_exchange(gw.port, _chat_bytes(gw, "beside the slow ones"), figures)
        assert answer is not None and answer.status == 200, answer
    finally:
        for sock in socks:
            sock.close()
    # Greenlets back to baseline: nothing left behind by the abandoned connections.
    wait_until(lambda: gw.runtime()["greenlets"] <= baseline, 10, "greenlets back to baseline")
