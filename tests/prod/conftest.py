"""Fixtures for the production tests: a real nginx in front of a gateway, SSE and log readers."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import urllib3

from tests.conftest import ROOT, TOKEN, GatewayProcess, free_port, wait_until

EXAMPLE = ROOT / "examples" / "nginx.conf"


def _nginx_binary() -> str:
    binary = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
    )
    if binary is None:
        message = "nginx is not installed (apt-get install -y nginx; .ci/run does it)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    return binary


class Nginx:
    """The project's examples/nginx.conf, pointed at a gateway, served on a free loopback port."""

    def __init__(self, binary: str, gateway_port: int, tmp: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.tmp = tmp
        site = EXAMPLE.read_text()
        site, n1 = re.subn(r"server 127\.0\.0\.1:18789;", f"server 127.0.0.1:{gateway_port};", site)
        site, n2 = re.subn(r"listen 80;", f"listen 127.0.0.1:{self.port};", site)
        assert n1 == n2 == 1, "examples/nginx.conf changed shape: update this fixture"
        (tmp / "site.conf").write_text(site)
        user = "user root;\n" if os.geteuid() == 0 else ""
        temp_paths = "".join(
            f"    {kind}_temp_path {tmp}/{kind};\n"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        (tmp / "nginx.conf").write_text(
            f"{user}daemon off;\nworker_processes 1;\npid {tmp}/nginx.pid;\n"
            f"error_log {tmp}/error.log warn;\n"
            "events { worker_connections 256; }\n"
            f"http {{\n    access_log off;\n{temp_paths}    include {tmp}/site.conf;\n}}\n"
        )
        self.proc = subprocess.Popen(
            [binary, "-p", str(tmp), "-e", str(tmp / "error.log"), "-c", str(tmp / "nginx.conf")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )

        def listening() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"nginx exited: {self.error_log()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return True
            except OSError:
                return False

        wait_until(listening, 10, "nginx to listen")

    def error_log(self) -> str:
        path = self.tmp / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


@pytest.fixture
def start_nginx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[int], Nginx]]:
    """Start nginx (examples/nginx.conf) in front of a gateway port; stopped after the test."""
    binary = _nginx_binary()
    started: list[Nginx] = []

    def start(gateway_port: int) -> Nginx:
        server = Nginx(binary, gateway_port, tmp_path_factory.mktemp("nginx"))
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


# ---------------------------------------------------------------------------------------------
# Streams and logs


@dataclass
class Event:
    data: str
    at: float  # time.monotonic() when the event arrived

    def json(self) -> Any:
        return json.loads(self.data)


@dataclass
class Stream:
    """An SSE chat stream read event by event, each stamped with its arrival time."""

    response: urllib3.BaseHTTPResponse
    events: list[Event] = field(default_factory=list)
    _buffer: bytes = b""

    @property
    def headers(self) -> Any:
        return self.response.headers

    def next_event(self) -> Event | None:
        while b"\n\n" not in self._buffer:
            chunk = self.response.read1(65536) if hasattr(self.response, "read1") else b""
            if not chunk:
                return None
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\n\n", 1)
        lines = [line[6:] for line in raw.decode().split("\n") if line.startswith("data: ")]
        if not lines:
            return self.next_event()  # a ": ping" comment
        event = Event("\n".join(lines), time.monotonic())
        self.events.append(event)
        return event

    def rest(self) -> list[Event]:
        while self.next_event() is not None:
            pass
        return self.events

    def text(self) -> str:
        parts = []
        for event in self.events:
            if event.data == "[DONE]":
                continue
            for choice in event.json().get("choices", []):
                parts.append(choice["delta"].get("content") or "")
        return "".join(parts)


def open_stream(
    base_url: str, content: str, headers: dict[str, str] | None = None, **body: Any
) -> Stream:
    http = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=5, read=30))
    response = http.request(
        "POST",
        base_url + "/v1/chat/completions",
        body=json.dumps(
            {
                "model": "openclaw",
                "stream": True,
                "messages": [{"role": "user", "content": content}],
            }
            | body
        ),
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
        | (headers or {}),
        preload_content=False,
    )
    assert response.status == 200, response.read()
    return Stream(response)


def log_lines(gateway: GatewayProcess) -> list[dict[str, Any]]:
    """The gateway's JSON request lines so far."""
    lines = []
    for line in gateway.log().splitlines():
        if line.startswith("{"):
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record.get("event") == "request":
                lines.append(record)
    return lines


def log_line_for(gateway: GatewayProcess, request_id: str) -> dict[str, Any]:
    """Wait for the request line with this ``X-Request-ID`` and return it."""

    def found() -> dict[str, Any] | None:
        return next((r for r in log_lines(gateway) if r.get("request_id") == request_id), None)

    return wait_until(found, 10, f"the log line of request {request_id}")  # type: ignore[no-any-return]
