"""Shared fixtures: the scriptable upstream, real gunicorn gateways, and the openai SDK client.

End-to-end tests share one gateway per session (``gateway``) wherever their config allows; tests
that need their own config start one with ``start_gateway(config)`` (stopped after the test).
"""

from __future__ import annotations

import copy
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
import urllib3

from tests.upstream import Upstream

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "test-token"
# Variables of the test runner that must not leak into a gateway under test.
_SCRUBBED_ENV = ("PORT", "WEB_CONCURRENCY", "REDIS_URL")

# The openai SDK imports its HTTP transport on the first client built. Doing that while the
# upstream's handler threads import too trips CPython 3.11's import-lock bug (a random
# KeyError from the import system), so build one client now, before any thread starts.
openai.OpenAI(api_key="-", base_url="http://127.0.0.1:9/v1").close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def base_config(upstream: Upstream, **gateway_overrides: Any) -> dict[str, Any]:
    """The standard test config: token auth, chat completions on, an agent on the upstream."""
    config: dict[str, Any] = {
        "gateway": {
            "auth": {"mode": "token", "token": TOKEN},
            "http": {"endpoints": {"chatCompletions": {"enabled": True}}},
        },
        "models": {
            "providers": {
                "up": {
                    "baseUrl": upstream.base_url,
                    "apiKey": "upstream-secret-key",
                    "api": "openai-completions",
                    "models": [{"id": "echo-model"}],
                    "timeoutSeconds": 3,
                }
            }
        },
        "agents": {
            "defaults": {"model": {"primary": "up/echo-model"}},
            "list": [
                {"id": "main", "default": True},
                {"id": "writer", "systemPrompt": "You are a careful editor."},
                {"id": "local", "model": "echo/echo"},
            ],
        },
    }
    for key, value in gateway_overrides.items():
        config["gateway"][key] = value
    return config


class GatewayProcess:
    """A gateway under gunicorn with the project's gunicorn.conf.py, on a free loopback port."""

    def __init__(
        self,
        config: dict[str, Any] | None,
        tmp: Path,
        env: dict[str, str] | None = None,
        workers: int = 1,
    ) -> None:
        self.tmp = tmp
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.state_dir = tmp / "state"
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = tmp / "gateway.log"
        self.config_path = tmp / "openclaw.json"
        base = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("OPENCLAW_") and k not in _SCRUBBED_ENV
        }
        base.update(
            OPENCLAW_STATE_DIR=str(self.state_dir),
            OPENCLAW_GATEWAY_PORT=str(self.port),
            WEB_CONCURRENCY=str(workers),
            PYTHONUNBUFFERED="1",
        )
        if config is not None:
            self.config_path.write_text(json.dumps(config))
            base["OPENCLAW_CONFIG_PATH"] = str(self.config_path)
        base.update(env or {})
        self.env = base
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0) -> GatewayProcess:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:application"],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        http = urllib3.PoolManager(retries=False)

        def up() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"gateway exited with {self.proc.returncode}:\n{self.log()}")
            try:
                return http.request("GET", self.url + "/healthz", timeout=1).status == 200
            except urllib3.exceptions.HTTPError:
                return False

        wait_until(up, timeout, "the gateway to answer /healthz")
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, graceful: bool = False) -> None:
        """Quick shutdown (SIGQUIT) unless ``graceful`` (SIGTERM: drain, as on a deploy)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM if graceful else signal.SIGQUIT)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)

    def client(self, **kwargs: Any) -> openai.OpenAI:
        kwargs.setdefault("api_key", TOKEN)
        kwargs.setdefault("max_retries", 0)
        kwargs.setdefault("timeout", 30)
        return openai.OpenAI(base_url=self.url + "/v1", **kwargs)


@pytest.fixture(scope="session")
def upstream_server() -> Iterator[Upstream]:
    server = Upstream().start()
    yield server
    server.stop()


@pytest.fixture
def upstream(upstream_server: Upstream) -> Iterator[Upstream]:
    """The session's upstream, with its records and script cleared for this test."""
    upstream_server.clear()
    yield upstream_server
    upstream_server.clear()


@pytest.fixture(scope="session")
def gateway(
    upstream_server: Upstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    """One shared gateway (standard config) for every end-to-end test that fits it."""
    process = GatewayProcess(base_config(upstream_server), tmp_path_factory.mktemp("gateway"))
    process.start()
    yield process
    process.stop()


@pytest.fixture
def start_gateway(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., GatewayProcess]]:
    """Start extra gateways with their own config; all are stopped after the test."""
    started: list[GatewayProcess] = []

    def start(
        config: dict[str, Any] | None,
        env: dict[str, str] | None = None,
        workers: int = 1,
        tmp: Path | None = None,
    ) -> GatewayProcess:
        process = GatewayProcess(
            copy.deepcopy(config) if config else config,
            tmp or tmp_path_factory.mktemp("gw"),
            env,
            workers,
        )
        started.append(process)
        return process.start()

    yield start
    for process in started:
        process.stop()


@pytest.fixture
def client(gateway: GatewayProcess) -> openai.OpenAI:
    """The official openai SDK pointed at the shared gateway (no retries)."""
    return gateway.client()


@pytest.fixture
def http() -> urllib3.PoolManager:
    return urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=5, read=30))


def unique(prefix: str = "t") -> str:
    """A unique id for session keys and users, so tests on the shared gateway never collide."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"
