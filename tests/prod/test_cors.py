"""CORS (SPEC 8): off by default; allowed origins get preflights and headers, others nothing."""

from __future__ import annotations

import pytest

from tests.conftest import GatewayProcess, base_config
from tests.prod.conftest import open_stream

ALLOWED = "https://chat.example"
OTHER = "https://evil.example"


@pytest.fixture(scope="module")
def cors_gateway(upstream_server, tmp_path_factory):
    config = base_config(upstream_server)
    config["gateway"]["http"]["cors"] = {"allowedOrigins": [ALLOWED]}
    process = GatewayProcess(config, tmp_path_factory.mktemp("cors")).start()
    yield process
    process.stop()


def _preflight(http, url: str, origin: str):
    return http.request(
        "OPTIONS",
        url + "/v1/chat/completions",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type, x-openclaw-session-key",
        },
    )


def _cors_headers(response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.lower().startswith("access-control-")}


def test_options_is_405_when_cors_is_off(gateway, http):
    response = _preflight(http, gateway.url, ALLOWED)
    assert response.status == 405
    assert _cors_headers(response) == {}


def test_preflight_from_allowed_origin_is_answered_without_auth(cors_gateway, http):
    response = _preflight(http, cors_gateway.url, ALLOWED)
    assert response.status == 204
    assert response.headers["Access-Control-Allow-Origin"] == ALLOWED
    allowed = [
        h.strip().lower() for h in response.headers["Access-Control-Allow-Headers"].split(",")
    ]
    assert {"content-type", "x-openclaw-session-key", "authorization"} <= set(allowed)
    assert "POST" in response.headers["Access-Control-Allow-Methods"]


def test_preflight_from_other_origin_gets_no_cors_headers(cors_gateway, http):
    response = _preflight(http, cors_gateway.url, OTHER)
    assert response.status == 405
    assert _cors_headers(response) == {}


def test_stream_to_allowed_origin_carries_cors_headers_with_its_headers(cors_gateway, upstream):
    stream = open_stream(cors_gateway.url, "hi", headers={"Origin": ALLOWED})
    # The headers were read before the first event.
    assert stream.events == []
    assert stream.headers["Access-Control-Allow-Origin"] == ALLOWED
    exposed = {h.strip() for h in stream.headers["Access-Control-Expose-Headers"].split(",")}
    assert exposed == {"X-Request-ID", "Retry-After"}
    assert stream.rest()[-1].data == "[DONE]"


def test_errors_to_allowed_origin_carry_cors_headers(cors_gateway, http):
    response = http.request(
        "GET", cors_gateway.url + "/v1/models", headers={"Origin": ALLOWED}
    )  # no token: 401, still readable by the page
    assert response.status == 401
    assert response.headers["Access-Control-Allow-Origin"] == ALLOWED


def test_stream_to_other_origin_gets_no_cors_headers(cors_gateway, upstream):
    stream = open_stream(cors_gateway.url, "hi", headers={"Origin": OTHER})
    assert _cors_headers(stream.response) == {}
    assert stream.rest()[-1].data == "[DONE]"
