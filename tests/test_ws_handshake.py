"""SPEC 7 handshake: challenge, connect, protocol, auth, device signatures, limits, deadline."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import urllib3

from tests.conftest import TOKEN, GatewayProcess, base_config
from tests.upstream import Upstream
from tests.wsclient import CLIENT, Device, WsClient, ws_url


@pytest.fixture
def url(gateway: GatewayProcess) -> str:
    return ws_url(gateway.url)


@pytest.fixture
def client(url: str) -> Iterator[WsClient]:
    ws = WsClient(url)
    yield ws
    ws.close()


def test_open_socket_gets_connect_challenge_first(client: WsClient) -> None:
    frame = client.challenge
    assert frame["type"] == "event"
    assert frame["event"] == "connect.challenge"
    assert len(frame["payload"]["nonce"]) == 36
    assert abs(frame["payload"]["ts"] - time.time() * 1000) < 60_000


def test_token_client_without_device_gets_hello_ok(client: WsClient) -> None:
    res = client.connect()
    assert res["ok"] is True
    hello = res["payload"]
    assert hello["type"] == "hello-ok"
    assert hello["protocol"] == 4
    assert hello["server"]["connId"]
    assert {"health", "agent", "chat.send", "chat.abort"} <= set(hello["features"]["methods"])
    assert {"agent", "chat", "tick", "shutdown"} <= set(hello["features"]["events"])
    snapshot = hello["snapshot"]
    assert snapshot["presence"] == []
    assert snapshot["stateVersion"] == {"presence": 0, "health": 0}
    assert snapshot["sessionDefaults"] == {
        "defaultAgentId": "main",
        "mainKey": "main",
        "mainSessionKey": "agent:main:main",
    }
    assert snapshot["authMode"] == "token"
    assert hello["auth"] == {"role": "operator", "scopes": ["operator.read", "operator.write"]}
    assert set(hello["policy"]) == {"maxPayload", "maxBufferedBytes", "tickIntervalMs"}
    assert hello["policy"]["tickIntervalMs"] == 30_000


def test_highest_common_protocol_is_chosen(client: WsClient) -> None:
    res = client.connect(minProtocol=1, maxProtocol=3)
    assert res["payload"]["protocol"] == 3


def test_client_gets_the_scopes_it_asked_for(client: WsClient) -> None:
    res = client.connect(scopes=["operator.read"])
    assert res["payload"]["auth"]["scopes"] == ["operator.read"]


@pytest.mark.parametrize("version", ["v2", "v3"])
def test_signed_device_is_accepted(client: WsClient, version: str) -> None:
    device = Device()
    client_info = {**CLIENT, "deviceFamily": "Desktop"}
    signed = device.sign(client.nonce, version=version, client=client_info, family="Desktop")
    res = client.connect(client=client_info, device=signed)
    assert res["ok"] is True, res
    assert client.call("health")["ok"] is True


def _refused(client: WsClient, res: dict[str, Any]) -> tuple[dict[str, Any], int | None]:
    assert res["ok"] is False, res
    code, _ = client.close_code()
    return res["error"], code


def test_first_frame_not_connect_is_closed_with_1008(client: WsClient) -> None:
    error, code = _refused(client, client.call("health"))
    assert error["code"] == "INVALID_REQUEST"
    assert "connect" in error["message"]
    assert code == 1008


def test_first_frame_not_json_is_closed_with_1008(client: WsClient) -> None:
    client.send("hello")
    frame = client.recv()
    assert frame["ok"] is False and frame["error"]["code"] == "INVALID_REQUEST"
    assert client.close_code()[0] == 1008


def test_protocol_mismatch_closes_1002_with_expected_protocol(client: WsClient) -> None:
    error, code = _refused(client, client.connect(minProtocol=5, maxProtocol=6))
    assert error["code"] == "INVALID_REQUEST"
    assert error["message"] == "protocol mismatch"
    assert error["details"]["expectedProtocol"] == 4
    assert code == 1002


def test_protocol_mismatch_is_checked_before_auth(client: WsClient) -> None:
    res = client.connect(minProtocol=1, maxProtocol=2, auth={"token": "wrong"})
    error, code = _refused(client, res)
    assert error["message"] == "protocol mismatch"
    assert code == 1002


def test_wrong_token_closes_1008(client: WsClient) -> None:
    error, code = _refused(client, client.connect(auth={"token": "wrong"}))
    assert error["code"] == "INVALID_REQUEST"
    assert error["message"] == "unauthorized: gateway token mismatch"
    assert code == 1008


def test_missing_token_closes_1008(client: WsClient) -> None:
    error, code = _refused(client, client.connect(auth={}))
    assert error["message"] == "unauthorized: gateway token missing"
    assert code == 1008


def test_unknown_connect_param_is_refused(client: WsClient) -> None:
    error, code = _refused(client, client.connect(surprise=True))
    assert error["code"] == "INVALID_REQUEST"
    assert "surprise" in error["message"]
    assert code == 1008


def _tamper_signature(device: Device, nonce: str) -> dict[str, Any]:
    signed = device.sign(nonce)
    signed["signature"] = device.sign(nonce, token="other")["signature"]
    return signed


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (_tamper_signature, "device signature invalid"),
        (
            lambda d, n: d.sign(n, signed_at=int(time.time() * 1000) - 11 * 60_000),
            "device signature expired",
        ),
        (lambda d, n: {**d.sign(n), "nonce": "not-the-challenge"}, "device nonce mismatch"),
        (lambda d, n: {**d.sign(n), "id": "0" * 64}, "device identity mismatch"),
    ],
    ids=["bad-signature", "stale-signedAt", "wrong-nonce", "wrong-id"],
)
def test_bad_device_is_refused_with_1008(
    client: WsClient, make: Callable[[Device, str], dict[str, Any]], message: str
) -> None:
    error, code = _refused(client, client.connect(device=make(Device(), client.nonce)))
    assert error["code"] == "INVALID_REQUEST"
    assert error["message"] == message
    assert code == 1008


def test_signature_over_another_nonce_is_invalid(client: WsClient) -> None:
    signed = Device().sign(client.nonce, signed_nonce="an-old-challenge")
    error, code = _refused(client, client.connect(device=signed))
    assert error["message"] == "device signature invalid"
    assert code == 1008


def test_oversized_frame_before_auth_closes_1009(client: WsClient) -> None:
    client.send("x" * (64 * 1024 + 1))
    code, _ = client.close_code()
    assert code == 1009


def test_frame_at_the_pre_auth_cap_is_read(client: WsClient) -> None:
    padding = "x" * (64 * 1024 - 400)
    res = client.connect(userAgent=padding)
    assert res["ok"] is True


def test_plain_get_on_root_is_still_plain_404(gateway: GatewayProcess) -> None:
    http = urllib3.PoolManager(retries=False)
    for method in ("GET", "POST", "HEAD"):
        response = http.request(method, gateway.url + "/")
        assert response.status == 404
        assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
        if method != "HEAD":
            assert response.data == b"Not Found"


def test_wrong_token_over_ws_counts_towards_the_shared_lockout(
    upstream: Upstream, start_gateway: Callable[..., GatewayProcess]
) -> None:
    config = base_config(upstream)
    config["gateway"]["auth"]["rateLimit"] = {
        "maxAttempts": 2,
        "windowMs": 60_000,
        "lockoutMs": 60_000,
        "exemptLoopback": False,
    }
    process = start_gateway(config)
    url = ws_url(process.url)
    for _ in range(2):
        ws = WsClient(url)
        assert ws.connect(auth={"token": "wrong"})["ok"] is False
        ws.close()
    # Locked out: the right token fails too, over WS and over HTTP.
    ws = WsClient(url)
    error, code = _refused(ws, ws.connect())
    assert "too many failed authentication attempts" in error["message"]
    assert error["details"]["retryAfterMs"] > 0
    assert error["details"]["code"] == "AUTH_RATE_LIMITED"
    assert code == 1008
    http = urllib3.PoolManager(retries=False)
    response = http.request(
        "GET", process.url + "/v1/models", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert response.status == 429


def test_no_connect_within_the_deadline_closes_the_socket(
    upstream: Upstream, start_gateway: Callable[..., GatewayProcess]
) -> None:
    process = start_gateway(base_config(upstream, ws={"handshakeTimeoutMs": 300}))
    ws = WsClient(ws_url(process.url))
    code, reason = ws.close_code()
    assert code == 1008
    assert reason == "handshake timeout"
