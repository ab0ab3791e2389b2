"""Details where SPEC is silent and the gateway matches what the real OpenClaw sends.

Each test pins one behaviour observed side by side with OpenClaw 2026.9.6 (docs/openclaw-compat.md);
it runs against this gateway only.
"""

from __future__ import annotations

import pytest

from tests.rawhttp import send


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
