"""SPEC 7 methods over a connected socket: reads, runs, idempotency, abort, errors, scopes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import urllib3

from tests.conftest import TOKEN, GatewayProcess, unique, wait_until
from tests.upstream import Upstream
from tests.wsclient import WsClient, connected, ws_url

SLOW = "[[upstream:slow interval=0.3 chunks=20]]"


@pytest.fixture
def url(gateway: GatewayProcess) -> str:
    return ws_url(gateway.url)


@pytest.fixture
def ws(url: str) -> Iterator[WsClient]:
    client = connected(url)
    yield client
    client.close()


def _ok(res: dict[str, Any]) -> Any:
    assert res["ok"] is True, res
    return res["payload"]


def _texts(message: dict[str, Any]) -> str:
    return "".join(part["text"] for part in message["content"] if part["type"] == "text")


def test_health_reports_live_and_ready(ws: WsClient) -> None:
    payload = _ok(ws.call("health"))
    assert payload["ok"] is True
    assert payload["ready"] is True


def test_status_reports_agents_and_connections(ws: WsClient) -> None:
    payload = _ok(ws.call("status"))
    assert payload["defaultAgentId"] == "main"
    assert [a["id"] for a in payload["agents"]] == ["main", "writer", "local"]
    assert payload["connections"] >= 1
    assert payload["draining"] is False


def test_models_list_names_the_configured_models(ws: WsClient) -> None:
    payload = _ok(ws.call("models.list"))
    assert {"id": "echo-model", "name": "echo-model", "provider": "up"} in payload["models"]


def test_agent_run_streams_lifecycle_and_deltas_then_final_res(ws: WsClient) -> None:
    key = unique("idem")
    session = unique("s")
    request_id = ws.request(
        "agent", {"message": "hello there", "idempotencyKey": key, "sessionKey": session}
    )
    accepted = _ok(ws.response(request_id))
    assert accepted["status"] == "accepted"
    assert accepted["runId"] == key
    final = _ok(ws.response(request_id))
    assert final["status"] == "ok"
    assert final["runId"] == key
    assert final["result"]["payloads"] == [{"text": "You said: hello there"}]
    events = [e["payload"] for e in ws.events if e.get("event") == "agent"]
    assert all(e["runId"] == key and e["sessionKey"] == session for e in events)
    streams = [(e["stream"], e["data"].get("phase")) for e in events]
    assert streams[0] == ("lifecycle", "start")
    assert streams[-1] == ("lifecycle", "end")
    deltas = [e["data"] for e in events if e["stream"] == "assistant"]
    assert len(deltas) >= 1
    assert "".join(d["delta"] for d in deltas) == "You said: hello there"
    assert deltas[-1]["text"] == "You said: hello there"
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))


def test_event_frames_carry_an_increasing_connection_seq(ws: WsClient) -> None:
    request_id = ws.request("agent", {"message": "count", "idempotencyKey": unique("idem")})
    ws.response(request_id)
    ws.response(request_id)
    seqs = [frame["seq"] for frame in ws.events if frame["type"] == "event"]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)


def test_agent_without_session_key_uses_the_main_session(ws: WsClient) -> None:
    key = unique("idem")
    request_id = ws.request("agent", {"message": f"main {key}", "idempotencyKey": key})
    ws.response(request_id)
    ws.response(request_id)
    history = _ok(ws.call("chat.history", {"sessionKey": "agent:main:main", "limit": 2}))
    assert _texts(history["messages"][0]) == f"main {key}"


def test_agent_wait_returns_ok_for_a_finished_run(ws: WsClient) -> None:
    key = unique("idem")
    request_id = ws.request("agent", {"message": "wait for me", "idempotencyKey": key})
    ws.response(request_id)
    payload = _ok(ws.call("agent.wait", {"runId": key, "timeoutMs": 10_000}))
    assert payload["status"] == "ok"
    assert payload["endedAt"] >= payload["startedAt"]


def test_agent_wait_sent_before_the_run_starts_answers_when_it_ends(ws: WsClient) -> None:
    key = unique("idem")
    wait_id = ws.request("agent.wait", {"runId": key, "timeoutMs": 10_000})
    ws.request("agent", {"message": "started later", "idempotencyKey": key})
    payload = _ok(ws.response(wait_id))
    assert payload["status"] == "ok"
    assert payload["runId"] == key


def test_agent_wait_times_out_for_an_unknown_run(ws: WsClient) -> None:
    payload = _ok(ws.call("agent.wait", {"runId": unique("nope"), "timeoutMs": 100}))
    assert payload["status"] == "timeout"


def test_agent_with_the_same_idempotency_key_runs_once(ws: WsClient, upstream: Upstream) -> None:
    key = unique("idem")
    params = {"message": "only once", "idempotencyKey": key, "sessionKey": unique("s")}
    first = ws.request("agent", params)
    ws.response(first)
    _ok(ws.response(first))
    second = ws.request("agent", params)
    assert _ok(ws.response(second))["runId"] == key
    assert _ok(ws.response(second))["status"] == "ok"
    assert len(upstream.requests) == 1


def test_chat_send_then_history_shows_the_turn(ws: WsClient) -> None:
    session = unique("s")
    started = _ok(
        ws.call(
            "chat.send",
            {"sessionKey": session, "message": "remember me", "idempotencyKey": unique("i")},
        )
    )
    assert started["status"] == "started"
    final = ws.event("chat", runId=started["runId"], state="final")["payload"]
    assert _texts(final["message"]) == "You said: remember me"
    history = _ok(ws.call("chat.history", {"sessionKey": session}))
    assert history["sessionKey"] == session
    roles = [(m["role"], _texts(m)) for m in history["messages"]]
    assert roles == [("user", "remember me"), ("assistant", "You said: remember me")]
    assert all(isinstance(m["timestamp"], int) for m in history["messages"])


def test_chat_send_streams_delta_events(ws: WsClient) -> None:
    started = _ok(
        ws.call(
            "chat.send",
            {"sessionKey": unique("s"), "message": "stream it", "idempotencyKey": unique("i")},
        )
    )
    ws.event("chat", runId=started["runId"], state="final")
    deltas = [
        e["payload"]
        for e in ws.events
        if e.get("event") == "chat" and e["payload"]["state"] == "delta"
    ]
    assert "".join(d["deltaText"] for d in deltas) == "You said: stream it"


def test_chat_send_with_the_same_idempotency_key_starts_no_second_run(
    ws: WsClient, upstream: Upstream
) -> None:
    params = {"sessionKey": unique("s"), "message": "just one", "idempotencyKey": unique("i")}
    first = _ok(ws.call("chat.send", params))
    again = _ok(ws.call("chat.send", params))
    assert again["runId"] == first["runId"]
    ws.event("chat", runId=first["runId"], state="final")
    assert len(upstream.requests) == 1
    history = _ok(ws.call("chat.history", {"sessionKey": params["sessionKey"]}))
    assert len(history["messages"]) == 2


def test_chat_abort_mid_run_cancels_the_upstream(ws: WsClient, upstream: Upstream) -> None:
    session = unique("s")
    started = _ok(
        ws.call(
            "chat.send",
            {"sessionKey": session, "message": f"{SLOW} go slow", "idempotencyKey": unique("i")},
        )
    )
    ws.event("chat", runId=started["runId"], state="delta")
    closed_before = upstream.closed_connections
    aborted = _ok(ws.call("chat.abort", {"sessionKey": session}))
    assert aborted["aborted"] is True
    assert aborted["runIds"] == [started["runId"]]
    ws.event("chat", runId=started["runId"], state="aborted")
    upstream.wait_for(lambda u: u.closed_connections > closed_before)
    # A cancelled run writes nothing to the transcript.
    assert _ok(ws.call("chat.history", {"sessionKey": session}))["messages"] == []


def test_chat_abort_with_nothing_running_aborts_nothing(ws: WsClient) -> None:
    payload = _ok(ws.call("chat.abort", {"sessionKey": unique("s")}))
    assert payload["aborted"] is False


def test_sessions_list_includes_a_session_after_its_turn(ws: WsClient) -> None:
    session = unique("s")
    started = _ok(
        ws.call(
            "chat.send", {"sessionKey": session, "message": "hi", "idempotencyKey": unique("i")}
        )
    )
    ws.event("chat", runId=started["runId"], state="final")
    sessions = _ok(ws.call("sessions.list", {"search": session}))["sessions"]
    assert len(sessions) == 1
    assert sessions[0]["key"] == session
    assert sessions[0]["agentId"] == "main"
    assert sessions[0]["messageCount"] == 2
    assert isinstance(sessions[0]["updatedAt"], int)


def test_session_started_over_http_continues_over_ws(
    gateway: GatewayProcess, ws: WsClient, upstream: Upstream
) -> None:
    session = unique("s")
    gateway.client().chat.completions.create(
        model="openclaw",
        messages=[{"role": "user", "content": "first over http"}],
        extra_headers={"x-openclaw-session-key": session},
    )
    started = _ok(
        ws.call(
            "chat.send",
            {"sessionKey": session, "message": "then over ws", "idempotencyKey": unique("i")},
        )
    )
    ws.event("chat", runId=started["runId"], state="final")
    sent = upstream.requests[-1].body
    assert sent is not None
    contents = [m["content"] for m in sent["messages"] if m["role"] in ("user", "assistant")]
    assert contents == ["first over http", "You said: first over http", "then over ws"]
    history = _ok(ws.call("chat.history", {"sessionKey": session}))
    assert len(history["messages"]) == 4


def test_unknown_method_is_invalid_request(ws: WsClient) -> None:
    res = ws.call("no.such.method")
    assert res["ok"] is False
    assert res["error"] == {"code": "INVALID_REQUEST", "message": "unknown method: no.such.method"}


def test_unknown_param_key_is_invalid_request(ws: WsClient) -> None:
    res = ws.call("chat.history", {"sessionKey": "x", "bogus": 1})
    assert res["ok"] is False
    assert res["error"]["code"] == "INVALID_REQUEST"
    assert "bogus" in res["error"]["message"]


def test_param_of_the_wrong_type_is_invalid_request(ws: WsClient) -> None:
    res = ws.call("chat.history", {"sessionKey": 5})
    assert res["ok"] is False
    assert res["error"]["code"] == "INVALID_REQUEST"


def test_missing_required_param_is_invalid_request(ws: WsClient) -> None:
    res = ws.call("agent", {"message": "no key"})
    assert res["ok"] is False
    assert "idempotencyKey" in res["error"]["message"]


def test_unknown_agent_is_invalid_request(ws: WsClient) -> None:
    res = ws.call("agent", {"message": "hi", "idempotencyKey": unique("i"), "agentId": "ghost"})
    assert res["ok"] is False
    assert res["error"]["code"] == "INVALID_REQUEST"
    assert res["error"]["message"] == "Unknown agent 'ghost'."


def test_missing_scope_is_forbidden(url: str) -> None:
    reader = connected(url, scopes=["operator.read"])
    try:
        assert reader.call("health")["ok"] is True
        res = reader.call("chat.send", {"sessionKey": "s", "message": "hi", "idempotencyKey": "k"})
        assert res["ok"] is False
        assert res["error"] == {"code": "FORBIDDEN", "message": "missing scope: operator.write"}
    finally:
        reader.close()


def test_agent_events_go_only_to_the_socket_that_started_the_run(url: str, ws: WsClient) -> None:
    other = connected(url)
    try:
        request_id = ws.request("agent", {"message": "private", "idempotencyKey": unique("i")})
        ws.response(request_id)
        ws.response(request_id)
        assert other.call("health")["ok"] is True
        assert not [e for e in other.events if e.get("event") == "agent"]
    finally:
        other.close()


def test_upstream_failure_ends_the_agent_run_with_an_error_res(ws: WsClient) -> None:
    key = unique("idem")
    request_id = ws.request(
        "agent",
        {
            "message": "[[upstream:error status=400]] fail",
            "idempotencyKey": key,
            "sessionKey": unique("s"),
        },
    )
    ws.response(request_id)
    final = ws.response(request_id)
    assert final["ok"] is False
    assert final["payload"]["status"] == "error"
    assert final["error"]["code"] == "UNAVAILABLE"
    phases = [
        e["payload"]["data"].get("phase")
        for e in ws.events
        if e.get("event") == "agent" and e["payload"]["stream"] == "lifecycle"
    ]
    assert phases == ["start", "error"]
    wait_until(lambda: ws.call("agent.wait", {"runId": key})["payload"]["status"] == "error")


def test_frame_with_a_lone_surrogate_is_invalid_request_and_the_socket_stays_usable(
    ws: WsClient,
) -> None:
    ws.send('{"type":"req","id":"s1","method":"agent","params":{"message":"hi \\ud800"}}')
    res = ws.recv()
    assert res["ok"] is False
    assert res["error"]["code"] == "INVALID_REQUEST"
    assert "lone surrogate" in res["error"]["message"]
    assert _ok(ws.call("health"))["ok"] is True


def test_deeply_nested_frame_is_invalid_request_and_the_socket_stays_usable(ws: WsClient) -> None:
    ws.send("[" * 50_000 + "]" * 50_000)
    res = ws.recv()
    assert res["error"] == {
        "code": "INVALID_REQUEST",
        "message": "invalid JSON: nested too deeply.",
    }
    assert _ok(ws.call("health"))["ok"] is True


def _greenlets(http: urllib3.PoolManager, gateway: GatewayProcess) -> int:
    answer = http.request(
        "GET", f"{gateway.url}/debug/runtime", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    return int(answer.json()["greenlets"])


def test_agent_waits_end_with_their_socket(
    http: urllib3.PoolManager, gateway: GatewayProcess, url: str
) -> None:
    def greenlets() -> int:
        return _greenlets(http, gateway)

    before = greenlets()
    client = connected(url)
    for _ in range(100):
        client.request("agent.wait", {"runId": unique("never"), "timeoutMs": 3_600_000})
    client.call("health")  # every wait above is registered by now
    assert greenlets() >= before + 100
    client.close()
    wait_until(lambda: greenlets() < before + 50, 10, "the socket's waits to end")


@pytest.mark.parametrize("timeout", ["NaN", "Infinity", "1e400", "1" + "0" * 400, "-1"])
def test_agent_with_a_non_finite_timeout_is_refused_and_the_worker_keeps_serving(
    url: str, timeout: str
) -> None:
    client = connected(url)
    try:
        frame = (
            '{"type":"req","id":"r1","method":"agent","params":{"message":"hi",'
            f'"idempotencyKey":"{unique("idem")}","timeout":{timeout}}}}}'
        )
        client.send(frame)
        # Refused at decode (no id to answer) or by the params check (answering r1).
        refused = client.recv()
        while refused["type"] != "res":
            refused = client.recv()
        assert refused["ok"] is False
        assert refused["error"]["code"] == "INVALID_REQUEST"
        # A run with a real timeout (a timer on the hub) still completes.
        request_id = client.request(
            "agent", {"message": "still here", "idempotencyKey": unique("idem"), "timeout": 30}
        )
        client.response(request_id)
        assert _ok(client.response(request_id))["status"] == "ok"
    finally:
        client.close()
