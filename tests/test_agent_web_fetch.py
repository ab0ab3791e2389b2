"""``web_fetch`` never reaches the host's own networks. Every connection here is to 127.0.0.0/8."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from openclaw_gateway.agent.tools import ToolError
from openclaw_gateway.agent.tools.web import check_address, fetch
from tests import agent_fixtures
from tests.agent_fixtures import post
from tests.upstream import reply, tool_call

agent_gateway = agent_fixtures.agent_gateway
agent_workspace = agent_fixtures.agent_workspace


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any resolution or connection attempt fail the test."""

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("the address check opened a connection or resolved a name")

    monkeypatch.setattr(socket, "getaddrinfo", forbidden)
    monkeypatch.setattr(socket, "create_connection", forbidden)
    monkeypatch.setattr(socket.socket, "connect", forbidden)


@pytest.mark.parametrize(
    "address",
    [
        "10.0.0.1",
        "192.168.1.1",
        "172.16.0.1",
        "169.254.169.254",
        "100.100.100.200",
        "100.64.0.1",
        "127.0.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "240.0.0.1",
        "::1",
        "::",
        "fe80::1",
        "fc00::1",
        "fd00:ec2::254",
        "ff02::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "::ffff:169.254.169.254",
        "64:ff9b::a9fe:a9fe",
        "2002:7f00:1::1",
    ],
)
def test_address_check_refuses_internal_addresses_without_connecting(no_network, address):
    assert check_address(address) is not None


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111"])
def test_address_check_accepts_public_addresses_without_connecting(no_network, address):
    assert check_address(address) is None


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.com/", "gopher://x/"])
def test_only_http_and_https_urls_are_fetched(no_network, url):
    with pytest.raises(ToolError, match="only http"):
        fetch(url)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_web_fetch_through_the_gateway_refuses_loopback(agent_gateway, upstream, host):
    url = f"http://{host}:{upstream.port}/v1/models"
    upstream.script(tool_call("web_fetch", json.dumps({"url": url}), call_id="f1"), reply("ok"))
    response = post(
        agent_gateway, {"model": "openclaw/tooly", "messages": [{"role": "user", "content": "get"}]}
    )
    assert response.status == 200
    result = upstream.requests[-1].body["messages"][-1]
    assert result["tool_call_id"] == "f1"
    assert result["content"].startswith(f"Error: refused: {host} resolves to a loopback address")
    assert not any(r.method == "GET" for r in upstream.requests)


def _only(allowed: str):
    return lambda address: None if address == allowed else "test-refused address"


def test_fetch_connects_to_the_checked_address_and_caps_the_size(upstream):
    text = fetch(f"http://127.0.0.1:{upstream.port}/v1/models", check=_only("127.0.0.1"))
    assert text.startswith("HTTP 200 application/json\n")
    assert json.loads(text.split("\n", 1)[1])["object"] == "list"
    assert upstream.requests[-1].headers["host"] == f"127.0.0.1:{upstream.port}"
    capped = fetch(
        f"http://127.0.0.1:{upstream.port}/v1/models", check=_only("127.0.0.1"), max_bytes=10
    )
    assert capped.endswith("\n[truncated]")
    assert len(capped.split("\n")[1]) == 10


@pytest.fixture
def redirector() -> Iterator[ThreadingHTTPServer]:
    """A loopback server that redirects every request to 127.0.0.2 (still loopback)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(302)
            self.send_header("Location", f"http://127.0.0.2:{self.server.server_address[1]}/x")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_redirect_to_a_refused_address_is_not_followed(redirector):
    port = redirector.server_address[1]
    with pytest.raises(ToolError, match="refused: 127.0.0.2 resolves to a test-refused address"):
        fetch(f"http://127.0.0.1:{port}/start", check=_only("127.0.0.1"))
