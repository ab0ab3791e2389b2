"""Client faults: a client that leaves at any phase cancels its run, closes the upstream request,
releases the session's lease at once (not after its TTL) and leaves nothing half-written.

A WebSocket run is different by design (README "WebSocket", as in OpenClaw): it outlives the
socket that started it. ``WS_PHASES``: a socket that leaves (FIN or RST) while its ``agent`` or
``chat.send`` run streams; the run completes and its turn lands exactly once, or, aborted with
``chat.abort`` first, it writes nothing and its upstream request is closed; the lease is released.
"""

from __future__ import annotations

import json
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from tests.conftest import unique, wait_until
from tests.reliability.conftest import RelGateway
from tests.reliability.figures import Figures
from tests.reliability.wire import http_request
from tests.upstream import Upstream
from tests.wsclient import WsClient, ws_url


def _close(sock: socket.socket, reset: bool) -> None:
    if reset:  # RST instead of FIN: the harshest way to leave
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def _request(gw: RelGateway, session_key: str, content: str, stream: bool) -> bytes:
    body = json.dumps(
        {"model": "openclaw", "stream": stream, "messages": [{"role": "user", "content": content}]}
    ).encode()
    return http_request(
        "POST",
        "/v1/chat/completions",
        [
            (b"Authorization", f"Bearer {gw.token}".encode()),
            (b"x-openclaw-session-key", session_key.encode()),
        ],
        body,
    )


@dataclass(frozen=True)
class Phase:
    name: str
    reaches_upstream: bool
    # Sends (part of) the request and returns once the client is at the phase to leave in.
    act: Callable[[socket.socket, bytes, Upstream], None]


def _before_body(sock: socket.socket, request: bytes, upstream: Upstream) -> None:
    sock.sendall(request.partition(b"\r\n\r\n")[0] + b"\r\n\r\n")


def _mid_body(sock: socket.socket, request: bytes, upstream: Upstream) -> None:
    head, _, body = request.partition(b"\r\n\r\n")
    sock.sendall(head + b"\r\n\r\n" + body[: len(body) // 2])


def _mid_stream(sock: socket.socket, request: bytes, upstream: Upstream) -> None:
    sock.sendall(request)
    received = b""
    while b'"content":"' not in received.partition(b'"role":"assistant"')[2]:
        chunk = sock.recv(65536)
        assert chunk, "the stream ended before its first content chunk"
        received += chunk


def _during_run(sock: socket.socket, request: bytes, upstream: Upstream) -> None:
    sock.sendall(request)
    upstream.wait_for(lambda u: u.active_streams > 0 or len(u.requests) > 0, timeout=10)


PHASES = [
    Phase("before body", False, _before_body),
    Phase("mid body", False, _mid_body),
    Phase("mid stream", True, _mid_stream),
    Phase("during a non-stream run", True, _during_run),
]


@pytest.mark.parametrize("reset", [False, True], ids=["fin", "rst"])
@pytest.mark.parametrize("phase", PHASES, ids=[p.name for p in PHASES])
def test_client_leaving_cancels_the_run_and_frees_the_session(
    rel_gateway: RelGateway, upstream: Upstream, figures: Figures, phase: Phase, reset: bool
) -> None:
    gw = rel_gateway
    session_key = unique("rel-leave")
    seeded = gw.turn(session_key, "remember the seed")
    assert seeded.status == 200, seeded
    before = gw.transcript(session_key)
    upstream.clear()
    stream = phase.name != "during a non-stream run"
    # Slow enough that the run is still going when the client leaves.
    request = _request(gw, session_key, "[[upstream:slow chunks=40 interval=0.1]]", stream)
    figures.injected(f"client: leave {phase.name} ({'rst' if reset else 'fin'})")

    sock = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
    try:
        phase.act(sock, request, upstream)
    finally:
        _close(sock, reset)

    if phase.reaches_upstream:
        upstream.wait_for(lambda u: u.closed_connections >= 1, timeout=10)
    wait_until(lambda: not gw.lease_held(session_key), 10, "the lease released")
    wait_until(lambda: gw.runtime()["activeRuns"] == 0, 10, "the run to end")
    assert gw.transcript(session_key) == before, "the abandoned run wrote to the transcript"

    # Well inside the 5 s lock wait: a leaked lease would make this a 409.
    after = gw.turn(session_key, "after the client left")
    assert after.status == 200, after
    assert (
        gw.transcript(session_key)[len(before) :][-1]["text"] == "You said: after the client left"
    )


def test_client_leaving_while_upstream_stalls_cancels_the_run(
    rel_gateway: RelGateway, upstream: Upstream, figures: Figures
) -> None:
    gw = rel_gateway
    session_key = unique("rel-stall-leave")
    figures.injected("client: leave while the upstream stalls")
    request = _request(gw, session_key, "[[upstream:stall seconds=2.5]]", stream=False)
    sock = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
    try:
        _during_run(sock, request, upstream)
    finally:
        _close(sock, reset=False)
    upstream.wait_for(lambda u: u.closed_connections >= 1, timeout=10)
    wait_until(lambda: not gw.lease_held(session_key), 10, "the lease released")
    assert gw.transcript(session_key) == []
    after = gw.turn(session_key, "next")
    assert after.status == 200, after


# --------------------------------------------------------------------------- WebSocket runs


@dataclass(frozen=True)
class WsPhase:
    """A WS socket that leaves while its run streams (README "WebSocket": the run outlives it)."""

    name: str
    method: str  # "agent" or "chat.send"
    abort: bool  # chat.abort (from another socket) before the socket leaves: nothing is written


WS_PHASES = [
    WsPhase("ws agent run, socket leaves", "agent", abort=False),
    WsPhase("ws chat.send run, socket leaves", "chat.send", abort=False),
    WsPhase("ws agent run aborted, socket leaves", "agent", abort=True),
    WsPhase("ws chat.send run aborted, socket leaves", "chat.send", abort=True),
]
SLOW_RUN = "[[upstream:slow chunks=20 interval=0.1]]"


def _ws(gw: RelGateway) -> WsClient:
    ws = WsClient(ws_url(gw.process.url))
    hello = ws.connect(auth={"token": gw.token})
    assert hello["ok"], hello
    return ws


def _first_delta(ws: WsClient, phase: WsPhase, run_id: str) -> None:
    if phase.method == "agent":
        ws.event("agent", runId=run_id, stream="assistant")
    else:
        ws.event("chat", runId=run_id, state="delta")


@pytest.mark.parametrize("reset", [False, True], ids=["fin", "rst"])
@pytest.mark.parametrize("phase", WS_PHASES, ids=[p.name for p in WS_PHASES])
def test_ws_socket_leaving_mid_run_lets_it_land_once_unless_aborted(
    rel_gateway: RelGateway, upstream: Upstream, figures: Figures, phase: WsPhase, reset: bool
) -> None:
    gw = rel_gateway
    session_key = unique("rel-ws-leave")
    seeded = gw.turn(session_key, "remember the seed")
    assert seeded.status == 200, seeded
    before = gw.transcript(session_key)
    upstream.clear()
    figures.injected(f"client: {phase.name} ({'rst' if reset else 'fin'})")

    ws = _ws(gw)
    params = {"sessionKey": session_key, "message": SLOW_RUN, "idempotencyKey": unique("i")}
    started = ws.call(phase.method, params)
    assert started["ok"], started
    run_id = started["payload"]["runId"]
    _first_delta(ws, phase, run_id)
    if phase.abort:
        other = _ws(gw)
        aborted = other.call("chat.abort", {"sessionKey": session_key})
        other.close()
        assert aborted["ok"] and aborted["payload"]["runIds"] == [run_id], aborted
    _close(ws.sock.sock, reset)

    wait_until(lambda: gw.runtime()["activeRuns"] == 0, 15, "the run to end")
    wait_until(lambda: not gw.lease_held(session_key), 10, "the lease released")
    added = gw.transcript(session_key)[len(before) :]
    if phase.abort:
        upstream.wait_for(lambda u: u.closed_connections >= 1, timeout=10)
        assert added == [], "the aborted run wrote to the transcript"
    else:
        # The run finished without its socket: its turn is in the transcript, exactly once.
        assert [e["role"] for e in added] == ["user", "assistant"], added
        assert added[0]["text"] == SLOW_RUN and added[1]["text"], added
        assert upstream.closed_connections == 0, "the upstream request was cut"
        gw.turns.setdefault(session_key, []).append(added[1]["text"])
        figures.turn_made()

    # Well inside the 5 s lock wait: a leaked lease would make this a 409.
    after = gw.turn(session_key, "after the socket left")
    assert after.status == 200, after
