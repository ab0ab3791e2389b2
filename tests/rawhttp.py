"""Raw-socket HTTP/1.1 for tests that check exact bytes (SSE framing, 413, header order).

Nothing here is clever: one request per connection, the response read as bytes, a chunked body
decoded, so a test sees exactly what the gateway wrote.
"""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from typing import Any

from tests.conftest import TOKEN

AUTH = {"Authorization": f"Bearer {TOKEN}"}


@dataclass
class RawResponse:
    status: int
    reason: str
    headers: dict[str, str]  # lower-cased names; repeated headers joined with ", "
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode()


def connect(port: int, timeout: float = 10.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def request_bytes(
    method: str,
    path: str,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    *,
    chunked: bool = False,
    keep_alive: bool = False,
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    if not keep_alive:
        lines.append("Connection: close")
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    payload = b""
    if body is not None:
        if chunked:
            lines.append("Transfer-Encoding: chunked")
            payload = b"%X\r\n%s\r\n0\r\n\r\n" % (len(body), body) if body else b"0\r\n\r\n"
        else:
            lines.append(f"Content-Length: {len(body)}")
            payload = body
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload


class Reader:
    """Reads one HTTP response from a socket, incrementally."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        if not data:
            return False
        self.buf += data
        return True

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            if not self._fill():
                raise ConnectionError("connection closed mid-line")
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def _exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self._fill():
                raise ConnectionError("connection closed mid-body")
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def head(self) -> tuple[int, str, dict[str, str]]:
        status_line = self._line().decode()
        _, status, reason = (status_line.split(" ", 2) + [""])[:3]
        headers: dict[str, str] = {}
        while line := self._line():
            name, _, value = line.decode().partition(":")
            key = name.strip().lower()
            headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
        self.status, self.headers = int(status), headers
        return int(status), reason, headers

    def chunks(self) -> Any:
        """Yield the body's pieces as they arrive (chunked, sized or until close)."""
        headers = self.headers
        if "chunked" in headers.get("transfer-encoding", ""):
            while True:
                size = int(self._line().split(b";")[0], 16)
                if size == 0:
                    self._line()
                    return
                yield self._exact(size)
                self._line()
        elif "content-length" in headers:
            yield self._exact(int(headers["content-length"]))
        else:
            while True:
                if self.buf:
                    data, self.buf = self.buf, b""
                    yield data
                if not self._fill():
                    return

    def response(self, head_only: bool = False) -> RawResponse:
        status, reason, headers = self.head()
        body = b"" if head_only else b"".join(self.chunks())
        return RawResponse(status, reason, headers, body)


def send(
    port: int,
    method: str,
    path: str,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    *,
    chunked: bool = False,
    timeout: float = 10.0,
) -> RawResponse:
    """Send one request on a fresh connection and read the whole response."""
    with connect(port, timeout) as sock:
        sock.sendall(request_bytes(method, path, headers, body, chunked=chunked))
        return Reader(sock).response(head_only=method == "HEAD")


def post_chat(
    port: int,
    payload: Any,
    headers: dict[str, str] | None = None,
    *,
    path_suffix: str = "",
    timeout: float = 10.0,
) -> RawResponse:
    """POST /v1/chat/completions with the test token and ``payload`` as JSON."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    all_headers = {**AUTH, "Content-Type": "application/json", **(headers or {})}
    path = "/v1/chat/completions" + path_suffix
    return send(port, "POST", path, all_headers, body, timeout=timeout)


def sse_events(body: bytes) -> list[bytes]:
    """Split an SSE body into its events (each without the trailing blank line)."""
    assert body.endswith(b"\n\n"), body[-200:]
    return body[:-2].split(b"\n\n")


def data_payloads(body: bytes) -> list[Any]:
    """The JSON (or ``[DONE]``) of every ``data:`` event, comments dropped."""
    out: list[Any] = []
    for event in sse_events(body):
        if event.startswith(b":"):
            continue
        assert event.startswith(b"data: "), event
        data = event[len(b"data: ") :]
        out.append("[DONE]" if data == b"[DONE]" else json.loads(data))
    return out


class SseStream:
    """A streaming chat completion on a raw socket, read event by event."""

    def __init__(
        self,
        port: int,
        payload: Any,
        headers: dict[str, str] | None = None,
        *,
        timeout: float = 10.0,
        keep_alive: bool = False,
    ) -> None:
        body = json.dumps(payload).encode()
        all_headers = {**AUTH, "Content-Type": "application/json", **(headers or {})}
        self.sock = connect(port, timeout)
        self.sock.sendall(
            request_bytes("POST", "/v1/chat/completions", all_headers, body, keep_alive=keep_alive)
        )
        self.reader = Reader(self.sock)
        self.status, _, self.headers = self.reader.head()
        self._chunks = self.reader.chunks()
        self._pending = b""
        self.raw = b""  # every body byte read so far

    def next_event(self) -> bytes | None:
        """The next event's bytes without its blank line; None at the end of the body."""
        while b"\n\n" not in self._pending:
            piece = next(self._chunks, None)
            if piece is None:
                assert not self._pending, self._pending
                return None
            self.raw += piece
            self._pending += piece
        event, _, self._pending = self._pending.partition(b"\n\n")
        return event

    def rest(self) -> list[bytes]:
        """Every remaining event."""
        events = []
        while (event := self.next_event()) is not None:
            events.append(event)
        return events

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> SseStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
