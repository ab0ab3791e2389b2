"""HTTP as the suite speaks it: a pooled client for well-formed requests, raw sockets for the rest.

Every answer becomes an ``Answer`` and is reported to the run's ``Figures`` (requests served,
statuses, secrets seen in a body), so the summary covers everything the suite received.
"""

from __future__ import annotations

import http.client
import json
import socket
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import urllib3

if TYPE_CHECKING:
    from tests.reliability.figures import Figures


@dataclass
class Answer:
    status: int
    headers: dict[str, str]  # lower-cased names
    body: bytes
    method: str = "GET"
    # True when the gateway app answered (it stamps every response with X-Request-ID); False for
    # answers made by the server layer (gevent's pywsgi) before the app saw the request.
    from_app: bool = field(init=False)

    def __post_init__(self) -> None:
        self.from_app = "x-request-id" in self.headers

    def json(self) -> Any:
        return json.loads(self.body)

    def sse_events(self) -> list[bytes]:
        """Return the ``data:`` payloads of an SSE body, in order (comments dropped)."""
        events = []
        for block in self.body.split(b"\n\n"):
            if block.startswith(b"data: "):
                events.append(block[len(b"data: ") :])
        return events


class Client:
    """A keep-alive client for the suite's well-formed requests; reports every answer."""

    def __init__(self, base_url: str, figures: Figures, token: str | None = None) -> None:
        self.base_url = base_url
        self.figures = figures
        self.token = token
        self.pool = urllib3.PoolManager(
            maxsize=8, retries=False, timeout=urllib3.Timeout(connect=5, read=60)
        )

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        *,
        auth: bool = True,
    ) -> Answer:
        sent = {"Content-Type": "application/json"}
        if auth and self.token:
            sent["Authorization"] = f"Bearer {self.token}"
        sent.update(headers or {})
        response = self.pool.request(method, self.base_url + path, body=body, headers=sent)
        answer = Answer(
            response.status,
            {k.lower(): v for k, v in response.headers.items()},
            response.data,
            method,
        )
        self.figures.observe(answer)
        return answer

    def chat(self, payload: Any, headers: dict[str, str] | None = None, **kwargs: Any) -> Answer:
        body = json.dumps(payload).encode()
        return self.request("POST", "/v1/chat/completions", body, headers, **kwargs)


def raw_exchange(
    port: int,
    data: bytes,
    figures: Figures | None = None,
    *,
    timeout: float = 30.0,
    half_close: bool = False,
) -> Answer | None:
    """Send ``data`` on a fresh connection and read one answer; None if the server just closed.

    ``half_close`` shuts the write side after sending (a truncated body then really ends).
    """
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(data)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered early (e.g. 413) and closed: read what it said
        method = _method(data)
        response = http.client.HTTPResponse(sock, method=method)
        try:
            response.begin()
            body = response.read()
        except (http.client.RemoteDisconnected, ConnectionResetError):
            return None
        except http.client.IncompleteRead as exc:
            body = exc.partial
        answer = Answer(
            response.status, {k.lower(): v for k, v in response.getheaders()}, bytes(body), method
        )
    if figures is not None:
        figures.observe(answer)
    return answer


def _method(data: bytes) -> str:
    head = data.split(b" ", 1)[0]
    return head.decode("latin-1") if head.isalpha() else "GET"


def http_request(
    method: str,
    path: str,
    headers: list[tuple[bytes, bytes]],
    body: bytes = b"",
    *,
    content_length: bool = True,
) -> bytes:
    """Build one HTTP/1.1 request with ``Connection: close``; header values are raw bytes."""
    lines = [f"{method} {path} HTTP/1.1".encode("latin-1"), b"Host: 127.0.0.1"]
    lines += [name + b": " + value for name, value in headers]
    if content_length:
        lines.append(b"Content-Length: %d" % len(body))
    lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n" + body
