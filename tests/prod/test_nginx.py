"""The gateway behind the real nginx with examples/nginx.conf: streams, upgrades, client IPs."""

from __future__ import annotations

import websocket

from tests.conftest import base_config, unique
from tests.prod.conftest import log_line_for, open_stream


def test_sse_chunks_arrive_through_nginx_while_upstream_is_still_sending(
    gateway, upstream, start_nginx
):
    nginx = start_nginx(gateway.port)
    stream = open_stream(nginx.url, "[[upstream:slow interval=0.5 chunks=4]] spaced out")
    assert stream.headers["Content-Type"].startswith("text/event-stream")
    while True:
        event = stream.next_event()
        assert event is not None, "stream ended before any content"
        if event.json()["choices"][0]["delta"].get("content"):
            break
    # Buffered by nginx, the first content would only arrive once the upstream had finished.
    still_streaming = upstream.active_streams
    events = stream.rest()
    assert still_streaming == 1
    assert events[-1].data == "[DONE]"
    contents = [e for e in events if e.data != "[DONE]" and e.json()["choices"]]
    contents = [e for e in contents if e.json()["choices"][0]["delta"].get("content")]
    assert len(contents) == 4
    assert contents[0].at < contents[-1].at
    assert stream.text() == "slow reply"


def test_websocket_upgrade_through_nginx_reaches_the_gateway(gateway, start_nginx):
    # Until the WS surface is merged, any path answers the handshake (gevent-websocket does it
    # before routing); once it is, this should speak `connect` on the gateway's WS route.
    nginx = start_nginx(gateway.port)
    request_id = unique("ws")
    ws = websocket.create_connection(
        nginx.url.replace("http://", "ws://") + "/", header=[f"X-Request-ID: {request_id}"]
    )
    try:
        assert ws.getstatus() == 101
        assert ws.getheaders()["upgrade"].lower() == "websocket"
    finally:
        ws.close()
    line = log_line_for(gateway, request_id)
    assert line["path"] == "/"


def test_client_ip_is_the_forwarded_one_when_nginx_is_a_trusted_proxy(
    upstream, start_gateway, start_nginx, http
):
    trusted = start_gateway(base_config(upstream, trustedProxies=["127.0.0.1"]))
    nginx = start_nginx(trusted.port)
    request_id = unique("ip")
    response = http.request(
        "GET",
        nginx.url + "/v1/models",
        headers={
            "Authorization": "Bearer test-token",
            "X-Forwarded-For": "203.0.113.7",
            "X-Request-ID": request_id,
        },
    )
    assert response.status == 200
    assert log_line_for(trusted, request_id)["client_ip"] == "203.0.113.7"


def test_client_ip_is_the_socket_peer_when_nginx_is_not_trusted(gateway, start_nginx, http):
    nginx = start_nginx(gateway.port)
    request_id = unique("ip")
    response = http.request(
        "GET",
        nginx.url + "/v1/models",
        headers={
            "Authorization": "Bearer test-token",
            "X-Forwarded-For": "203.0.113.7",
            "X-Request-ID": request_id,
        },
    )
    assert response.status == 200
    assert log_line_for(gateway, request_id)["client_ip"] == "127.0.0.1"
