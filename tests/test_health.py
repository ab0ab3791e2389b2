"""SPEC 6: liveness and readiness probes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import GatewayProcess, base_config
from tests.rawhttp import send

PROBES = ["/health", "/healthz", "/ready", "/readyz"]


@pytest.fixture(scope="module")
def broken_store_gateway(upstream_server, tmp_path_factory) -> Iterator[GatewayProcess]:
    """The SQLite file lives under a regular file, so the store can never open."""
    tmp = tmp_path_factory.mktemp("broken-store")
    blocker = tmp / "not-a-dir"
    blocker.write_text("")
    config = base_config(upstream_server)
    config["session"] = {"sqlitePath": str(blocker / "sessions.sqlite3")}
    process = GatewayProcess(config, tmp).start()
    yield process
    process.stop()


@pytest.mark.parametrize("path", ["/health", "/healthz"])
def test_liveness_is_ok_live(gateway, path):
    response = send(gateway.port, "GET", path)
    assert response.status == 200
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    assert response.json() == {"ok": True, "status": "live"}


@pytest.mark.parametrize("path", ["/ready", "/readyz"])
def test_readiness_is_ready(gateway, path):
    response = send(gateway.port, "GET", path)
    assert response.status == 200
    assert response.json()["ready"] is True


@pytest.mark.parametrize("path", PROBES)
def test_probes_need_no_auth_and_ignore_a_wrong_token(gateway, path):
    assert send(gateway.port, "GET", path, {"Authorization": "Bearer wrong"}).status == 200


@pytest.mark.parametrize("path", PROBES)
def test_probes_are_not_cached(gateway, path):
    assert send(gateway.port, "GET", path).headers["cache-control"] == "no-store"


@pytest.mark.parametrize("path", PROBES)
def test_head_probes_answer_without_a_body(gateway, path):
    response = send(gateway.port, "HEAD", path)
    assert response.status == 200
    assert response.headers["cache-control"] == "no-store"
    assert response.body == b""


def test_readiness_is_503_when_the_session_store_fails(broken_store_gateway):
    response = send(broken_store_gateway.port, "GET", "/readyz")
    assert response.status == 503
    assert response.headers["cache-control"] == "no-store"
    assert response.json() == {"ready": False, "failing": ["sessions"]}


def test_liveness_stays_up_when_the_session_store_fails(broken_store_gateway):
    assert send(broken_store_gateway.port, "GET", "/healthz").status == 200
