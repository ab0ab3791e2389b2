"""The hot path's connection handling: upstream connections are reused, and a client that leaves
still cancels its run (the disconnect watch is a libev watcher, not a greenlet per request)."""

from __future__ import annotations

import json
import socket

from tests.conftest import TOKEN, wait_until


def _raw_request(port: int, payload: dict[str, object]) -> socket.socket:
    body = json.dumps(payload).encode()
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(
        (
            "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        + body
    )
    return sock


def test_consecutive_runs_reuse_one_upstream_connection(client, upstream):
    client.chat.completions.create(model="openclaw", messages=[{"role": "user", "content": "a"}])
    opened = upstream.connections_opened
    for _ in range(3):
        client.chat.completions.create(
            model="openclaw", messages=[{"role": "user", "content": "b"}]
        )
        list(
            client.chat.completions.create(
                model="openclaw", stream=True, messages=[{"role": "user", "content": "c"}]
            )
        )
    assert upstream.connections_opened == opened


def test_client_leaving_a_json_run_closes_the_upstream_request(gateway, upstream):
    sock = _raw_request(
        gateway.port,
        {"model": "openclaw", "messages": [{"role": "user", "content": "[[upstream:stall]]"}]},
    )
    wait_until(lambda: upstream.requests, what="the upstream request")
    sock.close()
    upstream.wait_for(lambda u: u.closed_connections == 1)


def test_client_leaving_a_stream_closes_the_upstream_request(gateway, upstream):
    sock = _raw_request(
        gateway.port,
        {
            "model": "openclaw",
            "stream": True,
            "messages": [{"role": "user", "content": "[[upstream:stall_after_first_chunk]]"}],
        },
    )
    assert sock.recv(65536).startswith(b"HTTP/1.1 200")
    wait_until(lambda: upstream.requests, what="the upstream request")
    sock.close()
    upstream.wait_for(lambda u: u.closed_connections == 1)


def test_an_endpoint_keeps_its_pool_and_replaces_a_closed_one():
    """Providers look their host's connection pool up once: it stays theirs (and open) when the
    manager drops it from its own table, and a closed one is replaced, not used."""
    import urllib3

    from openclaw_gateway.providers.transport import Endpoint

    manager = urllib3.PoolManager(num_pools=1)
    endpoint = Endpoint(manager, "http://127.0.0.1:9/v1/chat/completions?x=1")
    first = endpoint.pool()
    assert endpoint.path == "/v1/chat/completions?x=1"
    assert endpoint.pool() is first
    manager.connection_from_url("http://127.0.0.2:9/")  # the manager forgets the first pool
    assert endpoint.pool() is first and first.pool is not None
    first.close()
    second = endpoint.pool()
    assert second is not first and second.pool is not None
    assert (second.host, second.port) == ("127.0.0.1", 9)
