"""SIGTERM as on a deploy: readiness 503, new runs refused, streams finish or end cleanly."""

from __future__ import annotations

import http.client
import json
import signal
import socket

import urllib3

from tests.conftest import TOKEN, base_config, wait_until
from tests.prod.conftest import Stream, open_stream


def _first_content(stream: Stream) -> None:
    while True:
        event = stream.next_event()
        assert event is not None, "stream ended before any content"
        choices = event.json().get("choices")
        if choices and choices[0]["delta"].get("content"):
            return


def _status(url: str) -> int:
    try:
        pool = urllib3.PoolManager(retries=False, timeout=5)
        return pool.request("GET", url, headers={"Connection": "close"}).status
    except urllib3.exceptions.HTTPError:
        return 0


def test_sigterm_lets_a_running_stream_finish_while_readyz_answers_503(upstream, start_gateway):
    gw = start_gateway(base_config(upstream, drainSeconds=20))
    assert _status(gw.url + "/readyz") == 200
    stream = open_stream(gw.url, "[[upstream:slow interval=0.3 chunks=6]] go")
    _first_content(stream)
    gw.signal(signal.SIGTERM)
    wait_until(lambda: _status(gw.url + "/readyz") == 503, 10, "/readyz to answer 503")
    assert upstream.active_streams == 1  # the 503 came while the stream was still running
    events = stream.rest()
    assert events[-1].data == "[DONE]"
    assert events[-2].json()["choices"][0]["finish_reason"] == "stop"
    assert not any("error" in e.data for e in events[:-1])
    assert stream.text() == "slow reply"
    assert gw.proc is not None
    assert gw.proc.wait(timeout=15) == 0


def test_sigterm_refuses_new_runs_with_503(upstream, start_gateway, http):
    gw = start_gateway(base_config(upstream, drainSeconds=20))
    stream = open_stream(gw.url, "[[upstream:slow interval=0.3 chunks=8]] hold the worker")
    _first_content(stream)
    gw.signal(signal.SIGTERM)
    wait_until(lambda: _status(gw.url + "/readyz") == 503, 10, "the drain to start")
    for streaming in (False, True):
        response = http.request(
            "POST",
            gw.url + "/v1/chat/completions",
            body=json.dumps(
                {"stream": streaming, "messages": [{"role": "user", "content": "too late"}]}
            ),
            headers={"Authorization": f"Bearer {TOKEN}", "Connection": "close"},
        )
        assert response.status == 503
        assert response.headers["Connection"] == "close"
        assert json.loads(response.data)["error"]["type"] == "unavailable"
    assert stream.rest()[-1].data == "[DONE]"


def test_sigterm_ends_a_stream_longer_than_the_window_with_error_and_done(upstream, start_gateway):
    gw = start_gateway(base_config(upstream, drainSeconds=1))
    stream = open_stream(gw.url, "[[upstream:slow interval=0.5 chunks=40]] a long one")
    _first_content(stream)
    gw.signal(signal.SIGTERM)
    events = stream.rest()
    assert events[-1].data == "[DONE]"
    error = events[-2].json()["error"]
    assert error["type"] == "api_error"
    assert error["code"] == "unavailable"
    assert 0 < len(stream.text()) < len("slow reply")
    assert gw.proc is not None
    assert gw.proc.wait(timeout=15) == 0


def test_sigterm_closes_idle_keepalive_connections_instead_of_waiting_for_them(
    upstream, start_gateway
):
    gw = start_gateway(base_config(upstream, drainSeconds=60))  # graceful_timeout 70 s
    idle = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=30)
    idle.request("GET", "/v1/models", headers={"Authorization": f"Bearer {TOKEN}"})
    reply = idle.getresponse()
    reply.read()
    assert reply.status == 200 and not reply.will_close
    gw.signal(signal.SIGTERM)
    assert gw.proc is not None
    assert gw.proc.wait(timeout=15) == 0  # well inside the 70 s the idle socket could hold it
    assert idle.sock is not None
    assert idle.sock.recv(1) == b""  # closed by the gateway, not left hanging


def test_sigterm_does_not_wait_for_a_connection_that_never_sends_a_request(upstream, start_gateway):
    gw = start_gateway(base_config(upstream, drainSeconds=60))  # graceful_timeout 70 s
    silent = socket.create_connection(("127.0.0.1", gw.port), timeout=30)
    gw.signal(signal.SIGTERM)
    assert gw.proc is not None
    assert gw.proc.wait(timeout=15) == 0
    # Hung up: a FIN if the worker had accepted it, a reset if it was still in the backlog.
    try:
        assert silent.recv(1) == b""
    except ConnectionResetError:
        pass
    silent.close()
