"""Malformed WebSocket input against the live gateway: every answer is documented, the worker stays up.

Property-based (hypothesis, derandomized in CI), on the reliability gateway's one worker:

- before auth: any text, JSON or binary first frame, a wrong value at any ``connect`` field, frames
  over the 64 KiB pre-auth cap (whole or in fragments), invalid UTF-8;
- after auth: a value of the wrong kind at every param of every method, unknown keys, any mix of
  declared keys and values, any text or JSON frame, binary frames, deeply nested and huge JSON;
- raw frames: fragmented messages (with pings between the fragments), continuation frames out of
  place, reserved bits, unknown opcodes, close frames with invalid codes.

Documented answers (SPEC 7, README "WebSocket"): an error ``res`` (``INVALID_REQUEST``,
``FORBIDDEN``, ``UNAVAILABLE``, ``AGENT_TIMEOUT``; never "internal error") on an open socket, or a
close frame: 1008 (a refused handshake), 1002 (protocol mismatch, a broken frame sequence), 1007
(invalid UTF-8 in a text frame), 1009 (a frame over the cap). Each test checks the worker's pid
before and after, and a ``health`` call on a fresh socket right after each example succeeds.
"""

from __future__ import annotations

import json
import math
import os
import struct
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import websocket
from hypothesis import given
from hypothesis import strategies as st

from openclaw_gateway.ws.methods import AGENT_PARAMS, METHODS
from tests.conftest import wait_until
from tests.reliability.conftest import RelGateway, examples
from tests.reliability.figures import Figures
from tests.reliability.test_malformed_input import _paths, _replace, json_values
from tests.wsclient import CLIENT, Closed, WsClient, ws_url

PRE_AUTH_CAP = 64 * 1024
DOCUMENTED_CODES = {"INVALID_REQUEST", "FORBIDDEN", "UNAVAILABLE", "AGENT_TIMEOUT"}
# Params of every method (SPEC 7: closed objects), as the gateway declares them.
SCHEMAS: dict[str, dict[str, str]] = {
    "health": {"probe": "boolean"},
    "status": {},
    "models.list": {},
    "sessions.list": {
        "limit": "integer",
        "agentId": "string",
        "search": "string",
        "activeMinutes": "integer",
        "includeGlobal": "boolean",
        "includeUnknown": "boolean",
    },
    "chat.history": {"sessionKey": "string", "limit": "integer"},
    "agent": AGENT_PARAMS,
    "agent.wait": {"runId": "string", "timeoutMs": "integer"},
    "chat.send": {
        "sessionKey": "string",
        "message": "string",
        "idempotencyKey": "string",
        "attachments": "array",
        "thinking": "string",
        "deliver": "boolean",
        "timeoutMs": "integer",
    },
    "chat.abort": {"sessionKey": "string", "runId": "string"},
}
PARAMS = [(m, key, kind) for m, schema in SCHEMAS.items() for key, kind in schema.items()]


def connect_params(token: str) -> dict[str, Any]:
    return {
        "minProtocol": 3,
        "maxProtocol": 4,
        "client": dict(CLIENT),
        "role": "operator",
        "scopes": ["operator.read", "operator.write"],
        "auth": {"token": token},
    }


CONNECT_PATHS = [p for p in _paths(connect_params("token")) if p]

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING = 0x0, 0x1, 0x2, 0x8, 0x9


def _fits(value: Any, kind: str) -> bool:
    """Whether ``value`` is of ``kind`` as the gateway reads params (integral floats are integers)."""
    if isinstance(value, bool):
        return kind == "boolean"
    if kind == "integer":
        return isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if kind == "number":
        return isinstance(value, int | float)
    types: dict[str, type] = {"string": str, "object": dict, "array": list, "boolean": bool}
    return isinstance(value, types[kind])


def frame(opcode: int, payload: bytes, *, fin: bool = True, rsv: int = 0) -> bytes:
    """Encode one masked client frame, byte by byte (no library checks on what it may hold)."""
    head = bytes([(0x80 if fin else 0) | (rsv << 4) | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    key = os.urandom(4)
    return head + key + websocket.ABNF.mask(key, payload)


class Socket:
    """One WS connection of the fuzzer: frames go out raw, answers are checked and counted."""

    def __init__(self, gw: RelGateway, figures: Figures) -> None:
        self.gw = gw
        self.figures = figures
        self.ws = WsClient(ws_url(gw.process.url), timeout=15)
        self.figures.observe_ws("challenge", json.dumps(self.ws.challenge))

    def connect(self) -> Socket:
        hello = self.call("connect", self.connect_params())
        assert hello["ok"], hello
        return self

    def connect_params(self) -> dict[str, Any]:
        return connect_params(self.gw.token)

    def send_raw(self, data: bytes) -> None:
        try:
            self.ws.sock.sock.sendall(data)
        except OSError:
            pass  # the server refused early (e.g. 1009) and closed: read what it said

    def send_text(self, text: str) -> None:
        self.send_raw(frame(OP_TEXT, text.encode("utf-8", "surrogatepass")))

    def request(self, method: Any, params: Any = None, request_id: str | None = None) -> str:
        request_id = request_id or uuid.uuid4().hex
        self.send_text(
            json.dumps({"type": "req", "id": request_id, "method": method, "params": params})
        )
        return request_id

    def recv(self) -> dict[str, Any]:
        """The next frame, checked: a documented ``res`` or an ``event``; counted."""
        got = self.ws.recv()
        assert isinstance(got, dict), got
        if got.get("type") == "res":
            assert isinstance(got.get("id"), str) and isinstance(got.get("ok"), bool), got
            if got["ok"]:
                outcome = "res ok"
            else:
                error = got["error"]
                assert error["code"] in DOCUMENTED_CODES, got
                assert isinstance(error["message"], str) and error["message"], got
                assert error["message"] != "internal error", got
                outcome = f"res {error['code']}"
        else:
            assert got.get("type") == "event" and isinstance(got.get("event"), str), got
            outcome = "event"
        self.figures.observe_ws(outcome, json.dumps(got))
        return got

    def answer(self, request_id: str) -> dict[str, Any]:
        while True:
            got = self.recv()
            if got.get("type") == "res" and got["id"] == request_id:
                return got

    def call(self, method: str, params: Any = None) -> dict[str, Any]:
        return self.answer(self.request(method, params))

    def until_sync(self) -> list[dict[str, Any]]:
        """Send a ``health`` and read up to its answer (it must succeed); return the ``res`` before."""
        sync = self.request("health", {})
        seen = []
        while True:
            got = self.recv()
            if got.get("type") == "res" and got["id"] == sync:
                assert got["ok"], got
                return seen
            if got.get("type") == "res":
                seen.append(got)

    def closed(self) -> tuple[list[dict[str, Any]], int | None]:
        """Read until the server closes: the ``res`` frames it sent on the way and its close code."""
        seen = []
        try:
            while True:
                got = self.recv()
                if got.get("type") == "res":
                    seen.append(got)
        except Closed as closed:
            self.figures.observe_ws(f"close {closed.code}", closed.reason)
            return seen, closed.code
        finally:
            # Both close frames are out: drop the socket (``close`` would wait for another).
            self.ws.sock.shutdown()

    def close(self) -> None:
        self.ws.close()


@pytest.fixture
def ws_stays_up(worker_stays_up: RelGateway, figures: Figures) -> Iterator[RelGateway]:
    """``worker_stays_up``, plus a ``health`` call on a fresh socket after the test."""
    yield worker_stays_up
    _health_on_a_fresh_socket(worker_stays_up, figures)


@pytest.fixture
def authed(ws_stays_up: RelGateway, figures: Figures) -> Iterator[Socket]:
    """One authenticated socket for all examples of a test: nothing may close it."""
    sock = Socket(ws_stays_up, figures).connect()
    yield sock
    assert sock.call("health")["ok"]
    sock.close()


def _health_on_a_fresh_socket(gw: RelGateway, figures: Figures) -> None:
    sock = Socket(gw, figures).connect()
    try:
        health = sock.call("health")
        assert health["ok"], health
    finally:
        sock.close()


def _refused(sock: Socket, *codes: int) -> None:
    """Check the socket gets an ``INVALID_REQUEST`` (if any ``res``) and closes with ``codes``."""
    seen, code = sock.closed()
    assert code in codes, (code, seen)
    for got in seen:
        assert not got["ok"] and got["error"]["code"] == "INVALID_REQUEST", got


# --------------------------------------------------------------------------- before auth

first_frames = (
    st.text(max_size=200)
    | json_values.map(json.dumps)
    | st.fixed_dictionaries(
        {
            "type": st.sampled_from(["req", "res", "event", "connect"]),
            "id": st.text(max_size=8) | st.integers(),
            "method": st.sampled_from(["health", "agent", "Connect", "connect ", ""]),
            "params": json_values,
        }
    ).map(json.dumps)
)


@examples(150)
@given(text=first_frames)
def test_any_first_frame_but_connect_is_refused_with_1008(
    ws_stays_up: RelGateway, figures: Figures, text: str
) -> None:
    figures.tried("ws: first frame")
    sock = Socket(ws_stays_up, figures)
    sock.send_text(text)
    _refused(sock, 1008)


@examples(150)
@given(path=st.sampled_from(CONNECT_PATHS), value=json_values)
def test_wrong_value_at_any_connect_field_is_hello_or_refused(
    ws_stays_up: RelGateway, figures: Figures, path: tuple[Any, ...], value: Any
) -> None:
    figures.tried("ws: connect field")
    sock = Socket(ws_stays_up, figures)
    request_id = sock.request("connect", _replace(sock.connect_params(), path, value))
    got = sock.answer(request_id)
    if got["ok"]:
        # The value was one the handshake takes (e.g. any client version): a working socket.
        assert got["payload"]["type"] == "hello-ok", got
        health = sock.call("health")
        assert health["ok"] or health["error"]["code"] == "FORBIDDEN", health  # e.g. no scopes
        sock.close()
        return
    assert got["error"]["code"] == "INVALID_REQUEST", got
    _refused(sock, 1002, 1008)


@examples(12)
@given(size=st.integers(PRE_AUTH_CAP + 1, 2 * 1024 * 1024), pieces=st.integers(1, 5))
def test_frames_over_the_pre_auth_cap_close_1009(
    ws_stays_up: RelGateway, figures: Figures, size: int, pieces: int
) -> None:
    figures.tried("ws: over the pre-auth cap")
    sock = Socket(ws_stays_up, figures)
    payload = b"x" * size
    step = -(-size // pieces)
    chunks = [payload[i : i + step] for i in range(0, size, step)]
    for n, chunk in enumerate(chunks):
        sock.send_raw(frame(OP_TEXT if n == 0 else OP_CONT, chunk, fin=n == len(chunks) - 1))
    _refused(sock, 1009)


@examples(40)
@given(data=st.binary(max_size=300))
def test_binary_first_frame_is_refused_with_1008(
    ws_stays_up: RelGateway, figures: Figures, data: bytes
) -> None:
    figures.tried("ws: binary first frame")
    sock = Socket(ws_stays_up, figures)
    sock.send_raw(frame(OP_BINARY, data))
    _refused(sock, 1008)


_BAD_UTF8 = [b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\x80", b"\xe2\x82"]


@st.composite
def invalid_utf8(draw: st.DrawFn) -> bytes:
    """Draw a valid request with an invalid UTF-8 sequence spliced in somewhere."""
    text = json.dumps({"type": "req", "id": "u", "method": "health", "params": {}}).encode()
    at = draw(st.integers(0, len(text)))
    return text[:at] + draw(st.sampled_from(_BAD_UTF8)) + text[at:]


@examples(40)
@given(data=invalid_utf8(), authenticated=st.booleans())
def test_invalid_utf8_text_frame_closes_1007(
    ws_stays_up: RelGateway, figures: Figures, data: bytes, authenticated: bool
) -> None:
    figures.tried("ws: invalid UTF-8")
    sock = Socket(ws_stays_up, figures)
    if authenticated:
        sock.connect()
    sock.send_raw(frame(OP_TEXT, data))
    _refused(sock, 1007)


# --------------------------------------------------------------------------- after auth


@st.composite
def wrong_kinds(draw: st.DrawFn) -> tuple[str, str, str, Any]:
    method, key, kind = draw(st.sampled_from(PARAMS))
    # NaN and Infinity are not JSON: the frame is refused before its params are read (that
    # answer is checked by test_any_params_of_any_method_get_a_documented_res).
    value = draw(json_values.filter(lambda v: v is not None and _finite(v) and not _fits(v, kind)))
    return method, key, kind, value


def _finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list):
        return all(_finite(v) for v in value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    return True


@examples(300)
@given(case=wrong_kinds())
def test_wrong_kind_at_every_param_of_every_method_is_invalid_request(
    authed: Socket, figures: Figures, case: tuple[str, str, str, Any]
) -> None:
    figures.tried("ws: wrong kind at a param")
    method, key, kind, value = case
    got = authed.call(method, {key: value})
    assert not got["ok"] and got["error"]["code"] == "INVALID_REQUEST", got
    # The message names the param and its kind (the exact wording follows OpenClaw's validator).
    assert key in got["error"]["message"] and f"must be {kind}" in got["error"]["message"], got


@examples(100)
@given(
    method=st.sampled_from(sorted(SCHEMAS)),
    key=st.text(min_size=1, max_size=20),
    value=json_values,
)
def test_unknown_param_of_any_method_is_invalid_request(
    authed: Socket, figures: Figures, method: str, key: str, value: Any
) -> None:
    figures.tried("ws: unknown param")
    if key in SCHEMAS[method]:
        key += "_"
    got = authed.call(method, {key: value})
    assert not got["ok"] and got["error"]["code"] == "INVALID_REQUEST", got
    assert "unexpected property" in got["error"]["message"], got


@st.composite
def method_calls(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    """Draw a method and params made of its declared keys (plus, rarely, others), any values."""
    method = draw(st.sampled_from(sorted(SCHEMAS)))
    keys = sorted(SCHEMAS[method]) or ["x"]
    params = draw(
        st.dictionaries(st.sampled_from(keys) | st.text(max_size=6), json_values, max_size=4)
    )
    return method, params


@examples(250)
@given(call=method_calls())
def test_any_params_of_any_method_get_a_documented_res(
    authed: Socket, figures: Figures, call: tuple[str, dict[str, Any]]
) -> None:
    figures.tried("ws: any params")
    method, params = call
    request_id = authed.request(method, params)
    # Only agent.wait answers later (when its run ends or its time is up); the rest at once.
    answered = {got["id"] for got in authed.until_sync()}
    assert method == "agent.wait" or request_id in answered, (method, params)


any_frames = (
    st.text(max_size=200)
    | json_values.map(json.dumps)
    | st.fixed_dictionaries(
        {
            "type": st.sampled_from(["req", "req", "res", "event"]),
            "id": st.text(max_size=8) | json_values,
            "method": st.sampled_from([*SCHEMAS, "connect", "nope", "Health", ""]) | json_values,
            "params": json_values,
        },
        optional={"extra": json_values},
    ).map(json.dumps)
)


@examples(250)
@given(text=any_frames)
def test_any_text_frame_after_auth_gets_a_documented_res(
    authed: Socket, figures: Figures, text: str
) -> None:
    figures.tried("ws: any frame after auth")
    authed.send_text(text)
    answered = authed.until_sync()
    try:
        request = json.loads(text)
    except ValueError:
        request = None
    if isinstance(request, dict) and request.get("method") == "agent.wait":
        return  # answered later, if at all (its wait may still be running)
    assert answered, text


@examples(40)
@given(data=st.binary(max_size=300))
def test_binary_frame_after_auth_is_invalid_request_and_the_socket_stays(
    authed: Socket, figures: Figures, data: bytes
) -> None:
    figures.tried("ws: binary frame after auth")
    authed.send_raw(frame(OP_BINARY, data))
    answered = authed.until_sync()
    assert [a["error"]["code"] for a in answered] == ["INVALID_REQUEST"], answered


@examples(40)
@given(
    depth=st.integers(50, 200_000),
    where=st.sampled_from(["frame", "params", "message"]),
    opener=st.sampled_from(["[", '{"a":']),
)
def test_deeply_nested_json_after_auth_is_invalid_request(
    authed: Socket, figures: Figures, depth: int, where: str, opener: str
) -> None:
    figures.tried("ws: deep nesting")
    closer = "]" if opener == "[" else "}"
    nested = opener * depth + "1" + closer * depth
    if where == "frame":
        text = nested
    elif where == "params":
        text = '{"type":"req","id":"deep","method":"health","params":{"probe":' + nested + "}}"
    else:
        text = (
            '{"type":"req","id":"deep","method":"chat.send","params":{"sessionKey":"k",'
            '"idempotencyKey":"i","message":' + nested + "}}"
        )
    authed.send_text(text)
    answered = authed.until_sync()
    assert [a["error"]["code"] for a in answered] == ["INVALID_REQUEST"], answered[:1]


@examples(6)
@given(size=st.integers(1024 * 1024, 4 * 1024 * 1024))
def test_huge_frame_after_auth_is_read_and_answered(
    authed: Socket, figures: Figures, size: int
) -> None:
    figures.tried("ws: huge frame")
    request_id = authed.request("health", {"probe": True, "padding": "x" * size})
    got = authed.answer(request_id)
    assert not got["ok"] and "unexpected property 'padding'" in got["error"]["message"], got


# --------------------------------------------------------------------------- raw frames


@examples(60)
@given(
    cuts=st.lists(st.integers(1, 60), min_size=1, max_size=6, unique=True),
    pings=st.lists(st.booleans(), min_size=7, max_size=7),
)
def test_fragmented_request_with_pings_between_is_answered(
    authed: Socket, figures: Figures, cuts: list[int], pings: list[bool]
) -> None:
    figures.tried("ws: fragmented frames")
    request_id = uuid.uuid4().hex
    data = json.dumps({"type": "req", "id": request_id, "method": "health", "params": {}}).encode()
    bounds = [0, *sorted(c for c in cuts if c < len(data)), len(data)]
    pieces = [data[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
    out = b""
    for n, piece in enumerate(pieces):
        last = n == len(pieces) - 1
        out += frame(OP_TEXT if n == 0 else OP_CONT, piece, fin=last)
        if pings[n] and not last:
            out += frame(OP_PING, b"between")  # control frames may come between fragments
    authed.send_raw(out)
    assert authed.answer(request_id)["ok"]


BROKEN_SEQUENCES: dict[str, list[bytes]] = {
    "continuation without a message": [frame(OP_CONT, b"{}")],
    "new message inside a fragmented one": [
        frame(OP_TEXT, b'{"type":', fin=False),
        frame(OP_TEXT, b'"req"}'),
    ],
    "reserved bit 1": [frame(OP_TEXT, b"{}", rsv=4)],
    "reserved bits 2 and 3": [frame(OP_TEXT, b"{}", rsv=3)],
    **{f"opcode {op}": [frame(op, b"{}")] for op in (3, 4, 5, 6, 7, 11, 12, 13, 14, 15)},
    **{
        f"close code {code}": [frame(OP_CLOSE, struct.pack("!H", code))]
        for code in (0, 999, 1004, 1005, 1006, 1015, 2999, 5000, 65535)
    },
}


@pytest.mark.parametrize("authenticated", [False, True], ids=["before auth", "after auth"])
@pytest.mark.parametrize("name", sorted(BROKEN_SEQUENCES))
def test_broken_frame_sequences_close_1002(
    ws_stays_up: RelGateway, figures: Figures, name: str, authenticated: bool
) -> None:
    figures.tried("ws: broken frame sequences")
    sock = Socket(ws_stays_up, figures)
    if authenticated:
        sock.connect()
    sock.send_raw(b"".join(BROKEN_SEQUENCES[name]))
    _refused(sock, 1002)


def test_fragmented_connect_is_accepted(ws_stays_up: RelGateway, figures: Figures) -> None:
    figures.tried("ws: fragmented connect")
    sock = Socket(ws_stays_up, figures)
    data = json.dumps(
        {"type": "req", "id": "c", "method": "connect", "params": sock.connect_params()}
    ).encode()
    third = len(data) // 3
    sock.send_raw(
        frame(OP_TEXT, data[:third], fin=False)
        + frame(OP_PING, b"")
        + frame(OP_CONT, data[third : 2 * third], fin=False)
        + frame(OP_CONT, data[2 * third :])
    )
    assert sock.answer("c")["ok"]
    assert sock.call("health")["ok"]
    sock.close()


def test_the_fuzzed_schemas_cover_every_method() -> None:
    assert set(SCHEMAS) == set(METHODS)


def test_waits_for_unknown_runs_do_not_outlive_their_socket(
    ws_stays_up: RelGateway, figures: Figures
) -> None:
    gw = ws_stays_up
    figures.tried("ws: agent.wait for unknown runs, then leave", 20)
    before = gw.probe()["greenlets"]
    sock = Socket(gw, figures).connect()
    for _ in range(20):
        sock.request("agent.wait", {"runId": uuid.uuid4().hex, "timeoutMs": 600_000})
    assert sock.call("health")["ok"]
    sock.close()
    # Each wait polls for its run until its time is up: with nobody left to answer, it stops.
    wait_until(lambda: gw.probe()["greenlets"] <= before, 10, "the waits to end with the socket")
