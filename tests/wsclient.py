"""A small OpenClaw-protocol client over ``websocket-client`` for the WebSocket tests."""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from typing import Any

import websocket
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tests.conftest import TOKEN

CLIENT = {"id": "test-client", "version": "1.0.0", "platform": "Linux", "mode": "cli"}


class Closed(Exception):
    """The server closed the socket: ``code`` and ``reason`` of its close frame."""

    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(f"closed {code} {reason!r}")
        self.code = code
        self.reason = reason


def ws_url(http_url: str) -> str:
    return http_url.replace("http://", "ws://", 1) + "/"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Device:
    """A test Ed25519 device identity that signs connect payloads like OpenClaw clients."""

    def __init__(self) -> None:
        self.key = Ed25519PrivateKey.generate()
        self.public_raw = self.key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.id = hashlib.sha256(self.public_raw).hexdigest()

    def sign(
        self,
        nonce: str,
        *,
        version: str = "v2",
        token: str = TOKEN,
        scopes: tuple[str, ...] = ("operator.read", "operator.write"),
        signed_at: int | None = None,
        client: dict[str, str] | None = None,
        family: str = "",
        signed_nonce: str | None = None,
    ) -> dict[str, Any]:
        client = client or CLIENT
        signed_at = int(time.time() * 1000) if signed_at is None else signed_at
        parts = [
            version,
            self.id,
            client["id"],
            client["mode"],
            "operator",
            ",".join(scopes),
            str(signed_at),
            token,
            signed_nonce if signed_nonce is not None else nonce,
        ]
        if version == "v3":
            parts += [client["platform"].lower(), family.lower()]
        signature = self.key.sign("|".join(parts).encode())
        return {
            "id": self.id,
            "publicKey": b64url(self.public_raw),
            "signature": b64url(signature),
            "signedAt": signed_at,
            "nonce": nonce,
        }


class WsClient:
    """One socket: reads the challenge on open; ``call`` sends a req and returns its res."""

    def __init__(self, url: str, timeout: float = 15, **options: Any) -> None:
        self.sock = websocket.create_connection(url, timeout=timeout, **options)
        self.events: list[dict[str, Any]] = []
        self.challenge = self.recv()

    @property
    def nonce(self) -> str:
        return str(self.challenge["payload"]["nonce"])

    def send(self, frame: Any) -> None:
        self.sock.send(frame if isinstance(frame, str) else json.dumps(frame))

    def recv(self) -> dict[str, Any]:
        """The next frame as JSON; raise ``Closed`` on the server's close frame."""
        while True:
            try:
                opcode, frame = self.sock.recv_data_frame(True)
            except websocket.WebSocketConnectionClosedException:
                raise Closed(None, "connection closed without a close frame") from None
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                data = frame.data or b""
                code = int.from_bytes(data[:2], "big") if len(data) >= 2 else None
                raise Closed(code, data[2:].decode("utf-8", "replace"))
            if opcode in (websocket.ABNF.OPCODE_TEXT, websocket.ABNF.OPCODE_BINARY):
                return dict(json.loads(frame.data))

    def request(self, method: str, params: dict[str, Any] | None = None) -> str:
        request_id = uuid.uuid4().hex
        frame: dict[str, Any] = {"type": "req", "id": request_id, "method": method}
        if params is not None:
            frame["params"] = params
        self.send(frame)
        return request_id

    def response(self, request_id: str) -> dict[str, Any]:
        """Read until the ``res`` for ``request_id``; events on the way go to ``events``."""
        while True:
            frame = self.recv()
            if frame.get("type") == "res" and frame.get("id") == request_id:
                return frame
            self.events.append(frame)

    def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.response(self.request(method, params))

    def event(self, name: str, **match: Any) -> dict[str, Any]:
        """The next ``name`` event whose payload has the ``match`` items (queued ones first)."""
        while True:
            for frame in self.events:
                if frame.get("event") == name and all(
                    frame["payload"].get(k) == v for k, v in match.items()
                ):
                    self.events.remove(frame)
                    return frame
            self.events.append(self.recv())

    def connect(self, **overrides: Any) -> dict[str, Any]:
        params: dict[str, Any] = {
            "minProtocol": 3,
            "maxProtocol": 4,
            "client": dict(CLIENT),
            "role": "operator",
            "auth": {"token": TOKEN},
        }
        params.update(overrides)
        return self.call("connect", params)

    def close_code(self) -> tuple[int | None, str]:
        """Read until the server's close frame; return its code and reason."""
        try:
            while True:
                self.events.append(self.recv())
        except Closed as closed:
            return closed.code, closed.reason

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def connected(url: str, **overrides: Any) -> WsClient:
    """A client that has completed the handshake (token auth, no device)."""
    client = WsClient(url)
    hello = client.connect(**overrides)
    assert hello["ok"], hello
    return client
