"""Details where SPEC is silent and the gateway matches what the real OpenClaw sends.

Each test pins one behaviour observed side by side with OpenClaw 2026.9.6 (docs/openclaw-compat.md);
it runs against this gateway only.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import TOKEN, GatewayProcess, unique
from tests.rawhttp import send
from tests.upstream import Upstream
from tests.wsclient import WsClient, connected, ws_url

SLOW = "[[upstream:slow interval=0.3 chunks=20]]"
HI = [{"role": "user", "content": "hi"}]


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


@pytest.fixture
def ws(gateway: GatewayProcess) -> Iterator[WsClient]:
    client = connected(ws_url(gateway.url))
    yield client
    client.close()


def test_agent_accepted_names_session_and_agent_and_events_carry_agent_id(ws: WsClient) -> None:
    key, session = unique("idem"), unique("s")
    request_id = ws.request(
        "agent",
        {"message": "hi", "idempotencyKey": key, "agentId": "writer", "sessionKey": session},
    )
    accepted = ws.response(request_id)["payload"]
    assert accepted["status"] == "accepted"
    assert accepted["agentId"] == "writer"
    assert accepted["sessionKey"] == session
    assert ws.response(request_id)["payload"]["status"] == "ok"
    events = [e["payload"] for e in ws.events if e.get("event") == "agent"]
    assert events, "no agent events"
    assert {(e["agentId"], e["sessionKey"]) for e in events} == {("writer", accepted["sessionKey"])}


def test_chat_final_carries_agent_id_and_stop_reason(ws: WsClient) -> None:
    started = ws.call(
        "chat.send",
        {"sessionKey": unique("s"), "message": "hello", "idempotencyKey": unique("i")},
    )["payload"]
    final = ws.event("chat", runId=started["runId"], state="final")["payload"]
    assert final["agentId"] == "main"
    assert final["stopReason"] == "stop"


def test_chat_aborted_event_says_rpc_and_keeps_the_text_streamed_so_far(ws: WsClient) -> None:
    session = unique("s")
    started = ws.call(
        "chat.send",
        {"sessionKey": session, "message": f"{SLOW} go", "idempotencyKey": unique("i")},
    )["payload"]
    delta = ws.event("chat", runId=started["runId"], state="delta")["payload"]
    assert ws.call("chat.abort", {"sessionKey": session})["payload"]["aborted"] is True
    aborted = ws.event("chat", runId=started["runId"], state="aborted")["payload"]
    assert aborted["stopReason"] == "rpc"
    text = aborted["message"]["content"][0]["text"]
    assert aborted["message"]["role"] == "assistant"
    assert text.startswith(delta["message"]["content"][0]["text"])


def _chat_error(gateway: GatewayProcess, payload: dict[str, Any]) -> dict[str, Any]:
    response = send(
        gateway.port,
        "POST",
        "/v1/chat/completions",
        {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        json.dumps(payload).encode(),
    )
    assert response.status == 400
    return response.json()["error"]


@pytest.mark.parametrize("field", ["presence_penalty", "frequency_penalty"])
def test_penalty_range_error_words_the_range_like_openclaw(gateway, field):
    error = _chat_error(gateway, {"messages": HI, field: 3})
    assert error["message"] == f"`{field}` must be between -2.0 and 2.0."


def test_tools_of_the_wrong_type_is_a_field_path_message(gateway):
    error = _chat_error(gateway, {"messages": HI, "tools": "x"})
    assert error["message"] == "tools: expected array, received string"
    assert error["param"] == "tools"


@pytest.mark.parametrize(
    ("method", "path", "auth", "reason"),
    [
        ("GET", "/nope", False, "Not Found"),
        ("GET", "/v1/chat/completions", False, "Method Not Allowed"),
        ("POST", "/v1/chat/completions", False, "Unauthorized"),
        ("POST", "/v1/chat/completions", True, "Bad Request"),
        ("GET", "/health", False, "OK"),
    ],
)
def test_status_line_reason_phrase_is_the_registered_one(gateway, method, path, auth, reason):
    headers = {"Authorization": f"Bearer {TOKEN}"} if auth else {}
    response = send(gateway.port, method, path, headers, b"{bad" if method == "POST" else None)
    assert response.reason == reason


@pytest.fixture
def raw_ws(gateway: GatewayProcess) -> Iterator[WsClient]:
    client = WsClient(ws_url(gateway.url))
    yield client
    client.close()


@pytest.mark.parametrize(
    ("auth", "code", "reason"),
    [
        ({"token": "wrong"}, "AUTH_TOKEN_MISMATCH", "token_mismatch"),
        ({}, "AUTH_TOKEN_MISSING", "token_missing"),
    ],
)
def test_refused_secret_names_the_reason_in_details(raw_ws: WsClient, auth, code, reason):
    res = raw_ws.connect(auth=auth)
    assert res["ok"] is False
    assert res["error"]["details"]["code"] == code
    assert res["error"]["details"]["authReason"] == reason
    assert raw_ws.close_code()[0] == 1008


def test_protocol_mismatch_details_echo_the_client_range(raw_ws: WsClient):
    res = raw_ws.connect(minProtocol=7, maxProtocol=9)
    details = res["error"]["details"]
    assert details["code"] == "PROTOCOL_MISMATCH"
    assert (details["clientMinProtocol"], details["clientMaxProtocol"]) == (7, 9)
    assert details["expectedProtocol"] == 4
    assert raw_ws.close_code()[0] == 1002


def test_ws_params_errors_are_worded_like_openclaws_validator(ws: WsClient) -> None:
    unknown = ws.call("chat.history", {"sessionKey": "main", "bogus": 1})["error"]
    assert unknown == {
        "code": "INVALID_REQUEST",
        "message": "invalid chat.history params: at root: unexpected property 'bogus'",
    }
    wrong = ws.call("sessions.list", {"limit": "x"})["error"]
    assert wrong["message"] == "invalid sessions.list params: at /limit: must be integer"


def test_sessions_list_carries_ts_and_count(ws: WsClient) -> None:
    session = unique("s")
    started = ws.call(
        "chat.send", {"sessionKey": session, "message": "hi", "idempotencyKey": unique("i")}
    )["payload"]
    ws.event("chat", runId=started["runId"], state="final")
    payload = ws.call("sessions.list", {"search": session})["payload"]
    assert payload["count"] == len(payload["sessions"]) == 1
    assert isinstance(payload["ts"], int) and payload["ts"] > 0


def test_hello_ok_conn_id_is_a_dashed_uuid(raw_ws: WsClient) -> None:
    conn_id = raw_ws.connect()["payload"]["server"]["connId"]
    assert str(uuid.UUID(conn_id)) == conn_id
