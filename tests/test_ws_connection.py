"""Per-connection behaviour: ticks, frame limits after auth, control frames, slow consumers."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import gevent
import pytest
import websocket

from openclaw_gateway.ws.connection import Connection
from tests.conftest import GatewayProcess, base_config, unique, wait_until
from tests.upstream import Upstream
from tests.wsclient import WsClient, connected, ws_url

MAX_PAYLOAD = 100_000
MAX_BUFFERED = 256 * 1024


@pytest.fixture(scope="module")
def tuned(
    upstream_server: Upstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    """A gateway with fast ticks, a small payload cap and a small send queue."""
    config = base_config(
        upstream_server,
        ws={"tickIntervalMs": 100, "maxPayload": MAX_PAYLOAD, "maxBufferedBytes": MAX_BUFFERED},
    )
    process = GatewayProcess(config, tmp_path_factory.mktemp("ws-tuned"))
    process.start()
    yield process
    process.stop()


@pytest.fixture
def url(tuned: GatewayProcess) -> str:
    return ws_url(tuned.url)


def test_hello_ok_announces_the_configured_policy(url: str) -> None:
    ws = WsClient(url)
    policy = ws.connect()["payload"]["policy"]
    assert policy == {
        "maxPayload": MAX_PAYLOAD,
        "maxBufferedBytes": MAX_BUFFERED,
        "tickIntervalMs": 100,
    }
    ws.close()


def test_connected_socket_receives_ticks(url: str) -> None:
    ws = connected(url)
    first = ws.event("tick")
    second = ws.event("tick")
    assert second["seq"] > first["seq"]
    assert second["payload"]["ts"] >= first["payload"]["ts"]
    ws.close()


def test_socket_before_connect_receives_no_ticks(url: str) -> None:
    waiting = WsClient(url)
    watcher = connected(url)
    # Two ticks on the connected socket: ticks went out while the other one sat unauthenticated.
    watcher.event("tick")
    watcher.event("tick")
    res = waiting.connect()
    assert res["ok"] is True
    assert waiting.events == []
    waiting.close()
    watcher.close()


def test_frame_over_the_pre_auth_cap_is_accepted_after_auth(url: str) -> None:
    ws = connected(url)
    big = ws.call("sessions.list", {"search": "y" * 70_000})
    assert big["ok"] is True
    ws.close()


def test_frame_over_max_payload_closes_1009(url: str) -> None:
    ws = connected(url)
    ws.send("x" * (MAX_PAYLOAD + 1))
    code, _ = ws.close_code()
    assert code == 1009


def test_ping_gets_a_pong(url: str) -> None:
    ws = connected(url)
    ws.sock.ping("are you there")
    while True:
        opcode, frame = ws.sock.recv_data_frame(True)
        if opcode == websocket.ABNF.OPCODE_PONG:
            break
    assert frame.data == b"are you there"
    ws.close()


def test_client_close_is_answered_with_a_close_frame(url: str) -> None:
    ws = connected(url)
    ws.sock.send_close(1000, b"bye")
    while True:
        opcode, frame = ws.sock.recv_data_frame(True)
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            break
    assert int.from_bytes(frame.data[:2], "big") == 1000
    ws.close()


def test_slow_consumer_is_closed_with_1008_and_others_keep_working(url: str) -> None:
    session = unique("slow")
    # A reply whose events add up to megabytes (each assistant event carries the text so far).
    text = "x" * 60_000
    slow = WsClient(url, sockopt=((socket.SOL_SOCKET, socket.SO_RCVBUF, 4096),))
    assert slow.connect()["ok"] is True
    slow.request(
        "agent",
        {
            "message": f"[[upstream:reply text={text} chunks=600]]",
            "idempotencyKey": unique("i"),
            "sessionKey": session,
        },
    )
    # The client reads nothing while the run streams; another socket watches the run end.
    other = connected(url)

    def run_finished() -> bool:
        found = other.call("sessions.list", {"search": session})["payload"]["sessions"]
        return bool(found) and found[0]["messageCount"] == 2

    wait_until(run_finished, timeout=30, what="the run to finish")
    assert other.call("health")["ok"] is True
    code, reason = slow.close_code()
    assert code == 1008
    assert reason == "slow consumer"
    other.close()


class _RecordingSocket:
    """Just what ``Connection`` uses of a ``GatewayWebSocket``: frames written are kept."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.on_ping = None

    def raw_write(self, data: bytes) -> None:
        self.written.append(data)


def test_a_tick_dropped_for_a_slow_reader_leaves_no_gap_in_seq() -> None:
    ws = _RecordingSocket()
    conn = Connection(ws, None, conn_id="c", client_ip="127.0.0.1", max_buffered=200)  # type: ignore[arg-type]
    assert conn.event("agent", {"text": "x" * 120})
    assert not conn.event("tick", {"ts": 1, "pad": "y" * 120}, drop_if_slow=True)
    gevent.sleep(0)  # the writer flushes the queue
    assert conn.event("agent", {"text": "z"})
    gevent.sleep(0)
    seqs = [json.loads(frame[frame.index(b"{") :])["seq"] for frame in ws.written]
    assert seqs == [1, 2]
