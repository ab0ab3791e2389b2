"""Details where SPEC is silent and the gateway matches what the real OpenClaw sends.

Each test pins one behaviour observed side by side with OpenClaw 2026.9.6 (docs/openclaw-compat.md);
it runs against this gateway only.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import TOKEN, GatewayProcess
from tests.rawhttp import send
from tests.upstream import Upstream
from tests.wsclient import connected, ws_url


@pytest.mark.parametrize("path", ["/health", "/healthz"])
def test_liveness_body_is_compact_json_like_openclaw(gateway, path):
    assert send(gateway.port, "GET", path).body == b'{"ok":true,"status":"live"}'


@pytest.mark.parametrize("path", ["/ready", "/readyz"])
def test_readiness_reports_empty_failing_list_and_uptime_like_openclaw(gateway, path):
    response = send(gateway.port, "GET", path)
    body = response.json()
    assert response.body.startswith(b'{"ready":true,"failing":[],"uptimeMs":')
    assert body["failing"] == []
    assert isinstance(body["uptimeMs"], int) and body["uptimeMs"] >= 0


def _issue2_config(upstream: Upstream) -> dict[str, Any]:
    """The catalog shape of the issue-2 config: a named model with display fields, no echo agent."""
    return {
        "gateway": {
            "auth": {"mode": "token", "token": TOKEN},
            "http": {"endpoints": {"chatCompletions": {"enabled": True}}},
        },
        "models": {
            "mode": "merge",
            "providers": {
                "fake": {
                    "baseUrl": upstream.base_url,
                    "apiKey": "fake-key",
                    "api": "openai-completions",
                    "models": [
                        {
                            "id": "echo-model",
                            "name": "Echo Model",
                            "reasoning": False,
                            "input": ["text", "image"],
                            "contextWindow": 128000,
                            "maxTokens": 4096,
                        }
                    ],
                }
            },
        },
        "agents": {
            "defaults": {"model": {"primary": "fake/echo-model", "fallbacks": []}},
            "entries": {"main": {"model": "fake/echo-model"}},
        },
    }


@pytest.fixture(scope="module")
def catalog_gateway(
    upstream_server: Upstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    process = GatewayProcess(_issue2_config(upstream_server), tmp_path_factory.mktemp("compat"))
    process.start()
    yield process
    process.stop()


def test_ws_models_list_shows_configured_name_and_catalog_fields_only(catalog_gateway):
    client = connected(ws_url(catalog_gateway.url))
    try:
        res = client.call("models.list")
    finally:
        client.close()
    assert res["payload"]["models"] == [
        {
            "id": "echo-model",
            "name": "Echo Model",
            "provider": "fake",
            "contextWindow": 128000,
            "reasoning": False,
        }
    ]
