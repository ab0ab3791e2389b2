"""The upstream's event stream is cut into events as sseclient-py cuts it, however the bytes
arrive: the gateway's ``SSEEvents`` finds event ends with ``bytes.find`` for bodies without
``\\r`` and hands anything else to sseclient's own line-by-line code."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from sseclient import SSEClient

from openclaw_gateway.providers.transport import SSEEvents

LINES = st.sampled_from(
    [
        b'data: {"choices":[{"delta":{"content":"hi"}}]}',
        b"data: [DONE]",
        b"data:no space",
        b"data",
        b"data: two\ndata: lines",
        b": a comment",
        b"event: message",
        b"id: 7",
        b"retry: 100",
        b"unknown: field",
        b"",
        b"   ",
        "data: caf\u00e9 \u2603".encode(),
    ]
)


def _events(client: SSEClient) -> list[tuple[object, ...]]:
    return [(e.id, e.event, e.data, e.retry) for e in client.events()]


def _cut(body: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(body) + 1) for c in cuts})
    pieces, last = [], 0
    for point in points:
        pieces.append(body[last:point])
        last = point
    pieces.append(body[last:])
    return [p for p in pieces if p]


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.lists(LINES, max_size=12), st.lists(st.integers(0, 10_000), max_size=8))
def test_events_match_sseclient_however_the_body_is_cut(lines, cuts):
    body = b"".join(line + b"\n" for line in lines) + b"\n"
    chunks = _cut(body, cuts)
    assert _events(SSEEvents(iter(chunks))) == _events(SSEClient(iter(chunks)))


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    st.lists(LINES, max_size=10),
    st.sampled_from([b"\r\n", b"\r"]),
    st.lists(st.integers(0, 10_000), max_size=6),
)
def test_bodies_with_carriage_returns_go_to_sseclients_own_cutting(lines, newline, cuts):
    body = b"".join(line.replace(b"\n", newline) + newline for line in lines) + newline
    chunks = _cut(body, cuts)
    assert _events(SSEEvents(iter(chunks))) == _events(SSEClient(iter(chunks)))


def test_an_unfinished_last_event_is_still_parsed():
    chunks = [b"data: a\n\ndata: b"]
    assert _events(SSEEvents(iter(chunks))) == _events(SSEClient(iter(chunks)))
