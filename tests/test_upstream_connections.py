"""The hot path's connection handling: upstream connections are reused, and a client that leaves
still cancels its run (the disconnect watch is a libev watcher, not a greenlet per request)."""

from __future__ import annotations

import json
import socket

from tests.conftest import TOKEN, wait_until

# The test provider's read timeout is 3 s (base_config): an upstream request closed later than
# this may have been closed by that timeout rather than by the client's leaving.
UNDER_THE_READ_TIMEOUT = 2.0


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
    upstream.wait_for(lambda u: u.closed_connections == 1, timeout=UNDER_THE_READ_TIMEOUT)


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
    upstream.wait_for(lambda u: u.closed_connections == 1, timeout=UNDER_THE_READ_TIMEOUT)


def _read_response(sock: socket.socket) -> bytes:
    """One HTTP/1.1 response with a Content-Length, read off a keep-alive socket."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += sock.recv(65536)
    return head


def test_the_disconnect_watch_serves_every_request_of_a_keep_alive_connection(gateway, upstream):
    """The watch is made once per connection: after two answered requests on it, a client that
    leaves during the third still cancels that run (and closes its upstream request)."""
    sock = _raw_request(
        gateway.port, {"model": "openclaw", "messages": [{"role": "user", "content": "one"}]}
    )
    assert _read_response(sock).startswith(b"HTTP/1.1 200")
    for content in ("two", "[[upstream:stall]]"):
        body = json.dumps({"model": "openclaw", "messages": [{"role": "user", "content": content}]})
        sock.sendall(
            (
                "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Authorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n{body}"
            ).encode()
        )
        if content == "two":
            assert _read_response(sock).startswith(b"HTTP/1.1 200")
    wait_until(lambda: any("stall" in json.dumps(r.body) for r in upstream.requests), what="run")
    sock.close()
    upstream.wait_for(lambda u: u.closed_connections == 1, timeout=UNDER_THE_READ_TIMEOUT)


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


HEADER_BLOCKS = [
    b"Content-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"content-length: 12\r\nX-Empty:\r\nX-Spaces:  \t padded value \t\r\nSet-Cookie: a=1\r\n"
    b"Set-Cookie: b=2\r\n\r\n",
    b"X-Unicode: caf\xc3\xa9\r\nX-Colon: a:b:c\r\n\n",
    # Not plain: folded continuation lines, a space before the colon, a line with no colon.
    b"X-Folded: first\r\n  second\r\nX-After: 1\r\n\r\n",
    b"Bad Name: v\r\nX-Ok: 1\r\n\r\n",
    b"no colon here\r\nX-Ok: 1\r\n\r\n",
    b"\r\n",
    b"",
]


def test_upstream_headers_are_read_as_http_client_reads_them():
    import http.client
    import io

    from openclaw_gateway.providers.transport import read_headers

    for block in HEADER_BLOCKS:
        tail = b"body bytes" if block else b""  # (no blank line: nothing is body)
        expected_fp, fp = io.BytesIO(block + tail), io.BytesIO(block + tail)
        expected = http.client.parse_headers(expected_fp)
        got = read_headers(fp)
        assert isinstance(got, http.client.HTTPMessage)
        assert got.items() == expected.items(), block
        assert got.get("content-length") == expected.get("content-length")
        assert fp.read() == expected_fp.read() == tail  # the body is left where it was


def test_upstream_header_limits_are_http_clients():
    import http.client
    import io

    import pytest

    from openclaw_gateway.providers.transport import read_headers

    with pytest.raises(http.client.LineTooLong):
        read_headers(io.BytesIO(b"X-Long: " + b"a" * 70000 + b"\r\n\r\n"))
    with pytest.raises(http.client.HTTPException, match="more than 100 headers"):
        read_headers(io.BytesIO(b"X-Many: 1\r\n" * 101 + b"\r\n"))


def test_a_pooled_connection_the_upstream_closed_is_replaced_not_reused():
    """The pool's dropped-connection check (a zero-timeout poll of the idle socket): a
    connection the server closed after its response is noticed before the next request, which
    goes out on a new connection instead of failing on the dead one (retries are off)."""
    import threading

    from openclaw_gateway.providers.transport import new_pool

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    accepted: list[int] = []
    closed = threading.Semaphore(0)

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            accepted.append(1)
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            # Keep-alive as far as the client can tell, then the server hangs up anyway.
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            conn.close()
            closed.release()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    pool = new_pool()
    try:
        for _ in range(3):
            response = pool.request("GET", f"http://127.0.0.1:{port}/", retries=False)
            assert (response.status, response.data) == (200, b"ok")
            assert closed.acquire(timeout=5)
        assert len(accepted) == 3
    finally:
        pool.clear()
        listener.close()


class _CountingSocket:
    """A connected socket that records the size of each ``sendall``."""

    def __init__(self, sock: socket.socket, sends: list[int]) -> None:
        self._sock = sock
        self._sends = sends

    def sendall(self, data: bytes) -> None:
        self._sends.append(len(data))
        self._sock.sendall(data)

    def __getattr__(self, name: str) -> object:
        return getattr(self._sock, name)


def test_a_request_head_and_small_body_leave_in_one_send():
    """http.client sends the head, then the body; the gateway's connections send both at once
    (one syscall, one TCP segment to the upstream) unless together they pass ONE_SEND_LIMIT."""
    import threading

    from openclaw_gateway.providers.transport import ONE_SEND_LIMIT, new_pool

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    received: list[bytes] = []

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            while True:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                head, _, body = data.partition(b"\r\n\r\n")
                length = int(
                    dict(line.split(b": ", 1) for line in head.split(b"\r\n")[1:]).get(
                        b"Content-Length", b"0"
                    )
                )
                while len(body) < length:
                    body += conn.recv(65536)
                received.append(body)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    threading.Thread(target=serve, daemon=True).start()
    pool = new_pool()
    sends: list[int] = []
    try:
        http_pool = pool.connection_from_url(f"http://127.0.0.1:{port}/")
        conn = http_pool._get_conn()
        conn.connect()
        conn.sock = _CountingSocket(conn.sock, sends)
        http_pool._put_conn(conn)
        for body in (b'{"small":1}', None, b"x" * ONE_SEND_LIMIT):
            sends.clear()
            response = http_pool.urlopen("POST", "/", body=body, retries=False)
            assert (response.status, response.data) == (200, b"ok")
            assert received[-1] == (body or b"")
            if body is None or len(body) < ONE_SEND_LIMIT // 2:
                assert len(sends) == 1  # head (+ body) in one send
            else:
                assert len(sends) == 2 and sends[1] == len(body)
    finally:
        pool.clear()
        listener.close()


CHUNKED_BODIES = [
    b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    b"5;ext=1\r\nhello\r\nA\r\n0123456789\r\n0\r\nX-Trailer: t\r\n\r\n",
    b"0\r\n\r\n",
    b"1a\r\n" + b"x" * 26 + b"\r\n0\r\n\r\n",
]
BROKEN_CHUNKED_BODIES = [
    b"5\r\nhel",  # ends inside a chunk
    b"5\r\nhello\r\n",  # ends before the next size line
    b"zz\r\nhello\r\n0\r\n\r\n",  # not a size
    b"-5\r\nhello\r\n0\r\n\r\n",  # a negative size
    b"1" * 70000 + b"\r\n",  # a size line over the limit
]


def _chunked_response(body: bytes):
    """A urllib3 response reading ``body`` (chunked) from a real socket; the peer then closes."""
    import urllib3

    from openclaw_gateway.providers.transport import _UpstreamResponse

    ours, theirs = socket.socketpair()
    head = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    theirs.sendall(head + body)
    theirs.close()
    raw = _UpstreamResponse(ours, method="POST")
    raw.begin()
    response = urllib3.HTTPResponse(
        body=raw,
        headers=dict(raw.msg.items()),
        status=raw.status,
        preload_content=False,
        original_response=raw,
    )
    return ours, response


def _read_all(chunks) -> tuple[list[bytes], BaseException | None]:
    got = []
    try:
        for chunk in chunks:
            got.append(chunk)
    except Exception as exc:  # noqa: BLE001 - compared below
        return got, exc
    return got, None


def test_chunked_bodies_are_read_as_urllib3_reads_them():
    """The gateway's chunked reader gives what urllib3's does, and fails where it fails, always
    with urllib3's ProtocolError (urllib3 itself lets a negative size through as a ValueError)."""
    from urllib3.exceptions import ProtocolError

    from openclaw_gateway.providers.transport import body_chunks

    for body in CHUNKED_BODIES + BROKEN_CHUNKED_BODIES:
        sock_a, ours = _chunked_response(body)
        sock_b, theirs = _chunked_response(body)
        try:
            got, error = _read_all(body_chunks(ours))
            expected, expected_error = _read_all(theirs.read_chunked(decode_content=True))
            assert got == expected, body[:40]
            if body in CHUNKED_BODIES:
                assert error is None and expected_error is None
                # Done: the body is closed, so the connection can go back to the pool.
                assert ours._fp.isclosed()
            else:
                assert isinstance(error, ProtocolError), (body[:40], error)
                assert expected_error is not None
        finally:
            sock_a.close()
            sock_b.close()
