"""SPEC 1: the order of checks on every HTTP request, and the headers every response carries."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest

from tests.conftest import GatewayProcess, base_config
from tests.rawhttp import AUTH, Reader, connect, post_chat, send

SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "permissions-policy": "camera=(), microphone=(), geolocation=()",
}
SMALL_LIMIT = 1024
HI = {"messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module")
def small_body_gateway(upstream_server, tmp_path_factory) -> Iterator[GatewayProcess]:
    """A gateway whose chat completions accept at most SMALL_LIMIT body bytes."""
    config = base_config(upstream_server)
    config["gateway"]["http"]["endpoints"]["chatCompletions"]["maxBodyBytes"] = SMALL_LIMIT
    process = GatewayProcess(config, tmp_path_factory.mktemp("small-body")).start()
    yield process
    process.stop()


def _assert_plain(response, status: int, text: str) -> None:
    assert response.status == status
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.text == text


# ---- 1. path


@pytest.mark.parametrize("path", ["/nope", "/v1/chat", "/v1/completions", "/", "/v2/models"])
def test_unknown_path_is_plain_404_before_auth(gateway, path):
    response = send(gateway.port, "POST", path)
    _assert_plain(response, 404, "Not Found")


@pytest.mark.parametrize("path", ["/v1/chat/completions/", "/v1/models/", "/healthz/"])
def test_trailing_slash_is_a_different_path(gateway, path):
    response = send(gateway.port, "GET", path, AUTH)
    _assert_plain(response, 404, "Not Found")


def test_query_string_is_ignored_on_chat_completions(gateway, upstream):
    response = post_chat(gateway.port, HI, path_suffix="?foo=bar&stream=true")
    assert response.status == 200
    assert response.json()["choices"][0]["message"]["content"] == "You said: hi"


def test_query_string_is_ignored_on_health(gateway):
    assert send(gateway.port, "GET", "/healthz?probe=1").status == 200


# ---- 2. method


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("GET", "/v1/chat/completions", "POST"),
        ("PUT", "/v1/chat/completions", "POST"),
        ("DELETE", "/v1/chat/completions", "POST"),
        ("HEAD", "/v1/chat/completions", "POST"),
        ("POST", "/v1/models", "GET"),
        ("DELETE", "/v1/models/openclaw", "GET"),
        ("POST", "/health", "GET, HEAD"),
        ("POST", "/healthz", "GET, HEAD"),
        ("PUT", "/ready", "GET, HEAD"),
        ("DELETE", "/readyz", "GET, HEAD"),
    ],
)
def test_wrong_method_is_plain_405_with_allow_before_auth(gateway, method, path, allow):
    response = send(gateway.port, method, path)
    assert response.status == 405
    assert response.headers["allow"] == allow
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    if method != "HEAD":
        assert response.text == "Method Not Allowed"


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/models", "/healthz"])
def test_options_is_a_wrong_method_when_cors_is_off(gateway, path):
    response = send(gateway.port, "OPTIONS", path, {"Origin": "http://ui.example"})
    _assert_plain(response, 405, "Method Not Allowed")
    assert "access-control-allow-origin" not in response.headers


# ---- 3. auth


def test_missing_auth_is_401_with_the_exact_envelope(gateway):
    response = send(gateway.port, "POST", "/v1/chat/completions", body=json.dumps(HI).encode())
    assert response.status == 401
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    assert response.json() == {
        "error": {
            "message": "Unauthorized",
            "type": "unauthorized",
            "param": None,
            "code": "invalid_api_key",
        }
    }


def test_auth_comes_before_the_body_size_check(gateway):
    response = send(
        gateway.port, "POST", "/v1/chat/completions", {"Content-Length": str(64 * 1024 * 1024)}
    )
    assert response.status == 401


def test_auth_comes_before_json_parsing(gateway):
    response = send(gateway.port, "POST", "/v1/chat/completions", body=b"{not json")
    assert response.status == 401


# ---- 4. body size


def test_content_length_over_the_default_limit_is_413_before_reading(gateway):
    # 30 MiB announced, nothing sent: the answer can only come from the header.
    headers = {**AUTH, "Content-Length": str(30 * 1024 * 1024)}
    response = send(gateway.port, "POST", "/v1/chat/completions", headers)
    assert response.status == 413
    assert response.headers["connection"] == "close"
    assert response.json()["error"]["message"] == "Payload too large"


def test_content_length_over_max_body_bytes_is_413(small_body_gateway):
    body = json.dumps({**HI, "pad": "x" * (2 * SMALL_LIMIT)}).encode()
    response = send(small_body_gateway.port, "POST", "/v1/chat/completions", AUTH, body)
    assert response.status == 413
    assert response.headers["connection"] == "close"
    assert response.json()["error"] == {
        "message": "Payload too large",
        "type": "invalid_request_error",
        "param": None,
        "code": "payload_too_large",
    }


def test_chunked_body_over_max_body_bytes_is_413_while_reading(small_body_gateway):
    body = json.dumps({**HI, "pad": "x" * (2 * SMALL_LIMIT)}).encode()
    response = send(
        small_body_gateway.port, "POST", "/v1/chat/completions", AUTH, body, chunked=True
    )
    assert response.status == 413
    assert response.headers["connection"] == "close"
    assert response.json()["error"]["message"] == "Payload too large"


def test_chunked_body_under_max_body_bytes_is_served(small_body_gateway, upstream):
    body = json.dumps(HI).encode()
    response = send(
        small_body_gateway.port, "POST", "/v1/chat/completions", AUTH, body, chunked=True
    )
    assert response.status == 200
    assert response.json()["choices"][0]["message"]["content"] == "You said: hi"


def test_a_body_of_exactly_max_body_bytes_is_read(small_body_gateway, upstream):
    body = json.dumps(HI).encode()
    body = body[:-1] + b" " * (SMALL_LIMIT - len(body)) + b"}"
    assert len(body) == SMALL_LIMIT
    for chunked in (False, True):
        response = send(
            small_body_gateway.port, "POST", "/v1/chat/completions", AUTH, body, chunked=chunked
        )
        assert response.status == 200


def test_body_size_comes_before_json_parsing(small_body_gateway):
    body = b"{not json" + b" " * (2 * SMALL_LIMIT)
    response = send(small_body_gateway.port, "POST", "/v1/chat/completions", AUTH, body)
    assert response.status == 413


# ---- 5. JSON


def test_invalid_json_is_400_with_the_parser_message(gateway):
    response = post_chat(gateway.port, b'{"messages": [')
    assert response.status == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["message"].startswith("Invalid JSON: Expecting value: line 1 column 15")


def test_json_that_is_not_an_object_is_400(gateway):
    response = post_chat(gateway.port, b"[1, 2]")
    assert response.status == 400
    assert response.json()["error"]["message"] == (
        "Invalid request body: expected object, received array"
    )


def test_empty_body_is_an_empty_object(gateway):
    response = send(gateway.port, "POST", "/v1/chat/completions", AUTH, b"")
    assert response.status == 400
    assert response.json()["error"]["message"] == "Missing user message in `messages`."


def test_json_is_parsed_whatever_the_content_type(gateway, upstream):
    response = post_chat(gateway.port, HI, {"Content-Type": "text/plain"})
    assert response.status == 200
    assert response.json()["choices"][0]["message"]["content"] == "You said: hi"


def test_json_is_parsed_without_a_content_type(gateway, upstream):
    body = json.dumps(HI).encode()
    response = send(gateway.port, "POST", "/v1/chat/completions", AUTH, body)
    assert response.status == 200


# ---- headers on every response


def _every_kind_of_response(gateway):
    big = {**AUTH, "Content-Length": str(30 * 1024 * 1024)}
    return {
        "200": post_chat(gateway.port, HI),
        "200 stream": post_chat(gateway.port, {**HI, "stream": True}),
        "200 health": send(gateway.port, "GET", "/healthz"),
        "200 models": send(gateway.port, "GET", "/v1/models", AUTH),
        "400": post_chat(gateway.port, {"messages": "hi"}),
        "401": send(gateway.port, "GET", "/v1/models"),
        "404": send(gateway.port, "GET", "/missing"),
        "405": send(gateway.port, "GET", "/v1/chat/completions"),
        "413": send(gateway.port, "POST", "/v1/chat/completions", big),
    }


def test_every_response_carries_the_security_headers(gateway, upstream):
    for name, response in _every_kind_of_response(gateway).items():
        for header, value in SECURITY_HEADERS.items():
            assert response.headers.get(header) == value, (name, header)


def test_every_response_carries_a_request_id(gateway, upstream):
    for name, response in _every_kind_of_response(gateway).items():
        assert re.fullmatch(r"[0-9a-f]{32}", response.headers.get("x-request-id", "")), name


@pytest.mark.parametrize("path", ["/v1/models", "/missing", "/healthz"])
def test_a_sane_client_request_id_is_echoed(gateway, path):
    response = send(gateway.port, "GET", path, {**AUTH, "X-Request-ID": "req-42.abc:XYZ_9"})
    assert response.headers["x-request-id"] == "req-42.abc:XYZ_9"


@pytest.mark.parametrize(
    "incoming", ["has spaces in it", "x" * 129, "semi;colon", "<script>", 'quote"d']
)
def test_an_insane_client_request_id_is_replaced(gateway, incoming):
    response = send(gateway.port, "GET", "/v1/models", {**AUTH, "X-Request-ID": incoming})
    assert response.status == 200
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-request-id"])


def test_a_client_request_id_is_echoed_on_a_401(gateway):
    response = send(gateway.port, "GET", "/v1/models", {"X-Request-ID": "trace-401"})
    assert response.status == 401
    assert response.headers["x-request-id"] == "trace-401"


def test_a_malformed_chunked_body_is_400(gateway):
    with connect(gateway.port) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            b"Authorization: Bearer test-token\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"zz\r\n{}\r\n0\r\n\r\n"
        )
        response = Reader(sock).response()
    assert response.status == 400
    assert response.json()["error"]["message"] == "The request body could not be read."


@pytest.mark.parametrize("length", ["abc", "-5"])
def test_a_malformed_content_length_is_400(gateway, length):
    with connect(gateway.port) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            b"Authorization: Bearer test-token\r\nContent-Length: %s\r\n\r\n{}" % length.encode()
        )
        assert Reader(sock).response().status == 400
