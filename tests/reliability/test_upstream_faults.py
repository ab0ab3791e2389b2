"""Upstream faults: each gives SPEC's status or error event, the transcript is unchanged, and the
next turn of the same session works (and sends no trace of the failed one upstream).

Agent-tool faults are rows too (the ``tooly`` agent, two tool rounds at most): a model that keeps
calling tools past the round limit, and tool calls the guards refuse (a path out of the workspace,
a fetch of a loopback address) or cannot parse, followed by an upstream failure.

Extension point: WS runs reuse ``_fault_then_recovery`` with a WS ``agent`` call in place of the
HTTP request.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from tests.conftest import unique
from tests.reliability.conftest import RelGateway
from tests.reliability.contract import assert_envelope, assert_sse_error
from tests.reliability.figures import Figures
from tests.upstream import Upstream, error, no_done, reply, tool_call, tool_calls


@dataclass(frozen=True)
class Fault:
    name: str
    directive: str  # the [[upstream:...]] directive, or "" when the agent or script injects it
    status: int  # the JSON answer's status
    code: str
    agent: str = "openclaw"
    script: Callable[[], object] | None = None  # queued behaviour(s) instead of a directive
    tool_errors: int = 0  # tool results the model must get back as "Error: ..." (refusals)


# A body that is a complete, well-formed SSE stream with no finish_reason and no [DONE].
_CUT_STREAM = (
    'data: {"id":"x","object":"chat.completion.chunk","created":0,"model":"m",'
    '"choices":[{"index":0,"delta":{"content":"half a"},"finish_reason":null}]}\n\n'
)

# Valid JSON in every event, but not the shape of a chunk.
_BAD_CHUNK = 'data: {"choices":[null]}\n\ndata: [DONE]\n\n'

FAULTS = [
    Fault("connection refused", "", 502, "upstream_unreachable", agent="openclaw/down"),
    Fault("reset before headers", "[[upstream:reset]]", 502, "upstream_error"),
    Fault("reset mid-stream", "[[upstream:drop after_chunks=1]]", 502, "upstream_error"),
    Fault(
        "stall past the timeout",
        "[[upstream:stall seconds=3]]",
        504,
        "upstream_timeout",
        agent="openclaw/impatient",
    ),
    Fault("upstream 500", "[[upstream:error status=500]]", 502, "upstream_error"),
    Fault("upstream 429", "[[upstream:error status=429]]", 429, "upstream_rate_limited"),
    Fault("upstream 401", "[[upstream:error status=401]]", 502, "upstream_error"),
    Fault("invalid JSON", "[[upstream:invalid_json]]", 502, "upstream_error"),
    Fault(
        "stream chunk of the wrong shape",
        "",
        502,
        "upstream_error",
        script=lambda: error(200, body=_BAD_CHUNK, headers={"Content-Type": "text/event-stream"}),
    ),
    Fault(
        "stream ends without finish or [DONE]",
        "",
        502,
        "upstream_error",
        script=lambda: error(200, body=_CUT_STREAM, headers={"Content-Type": "text/event-stream"}),
    ),
    Fault(
        "tool: past the round limit",
        "",
        502,
        "tool_round_limit",
        agent="openclaw/tooly",
        script=lambda: tuple(tool_call("current_time", "{}", call_id=f"l{i}") for i in range(3)),
    ),
    Fault(
        "tool: refused by the guards, then upstream 500",
        "",
        502,
        "upstream_error",
        agent="openclaw/tooly",
        tool_errors=3,
        script=lambda: (
            tool_calls(
                [
                    ("workspace_read", '{"path": "../../etc/passwd"}', "g1"),
                    ("workspace_write", '{"path": "/tmp/x", "content": "x"}', "g2"),
                    # Loopback only: were the guard broken, nothing but 127/8 is reached.
                    ("web_fetch", '{"url": "http://127.0.0.1:1/"}', "g3"),
                ]
            ),
            error(500),
        ),
    ),
    Fault(
        "tool: unparsable arguments, then upstream 500",
        "",
        502,
        "upstream_error",
        agent="openclaw/tooly",
        tool_errors=1,
        script=lambda: (tool_call("workspace_write", "{not json", call_id="j1"), error(500)),
    ),
]


def _seed(gw: RelGateway) -> tuple[str, list[dict[str, object]]]:
    session_key = unique("rel-fault")
    seeded = gw.turn(session_key, "remember the seed")
    assert seeded.status == 200, seeded
    return session_key, gw.transcript(session_key)


def _fault_then_recovery(
    gw: RelGateway, upstream: Upstream, figures: Figures, fault: Fault, stream: bool
) -> None:
    session_key, before = _seed(gw)
    figures.injected(f"upstream: {fault.name}")
    if fault.script is not None:
        scripted = fault.script()
        upstream.script(*(scripted if isinstance(scripted, tuple) else (scripted,)))  # type: ignore[arg-type]
    payload = {
        "model": fault.agent,
        "stream": stream,
        "messages": [{"role": "user", "content": f"doomed turn {fault.directive}"}],
    }
    answer = gw.client.chat(payload, {"x-openclaw-session-key": session_key})
    if stream:
        error_ = assert_sse_error(answer)
        assert error_["code"] == fault.code, error_
    else:
        error_ = assert_envelope(answer, fault.status)
        assert error_["code"] == fault.code, error_
    if fault.tool_errors:
        results = [m for m in upstream.requests[-1].body["messages"] if m["role"] == "tool"]
        assert [str(m["content"])[:6] for m in results] == ["Error:"] * fault.tool_errors, results
    assert gw.transcript(session_key) == before, "the failed run wrote to the transcript"
    assert not gw.lease_held(session_key)

    after = gw.turn(session_key, "after the fault")
    assert after.status == 200, after
    sent = [(m["role"], m["content"]) for m in upstream.requests[-1].body["messages"]]
    assert sent == [
        ("user", "remember the seed"),
        ("assistant", "You said: remember the seed"),
        ("user", "after the fault"),
    ]


@pytest.mark.parametrize("fault", FAULTS, ids=[f.name for f in FAULTS])
def test_upstream_fault_gives_spec_status_and_keeps_the_transcript(
    rel_gateway: RelGateway, upstream: Upstream, figures: Figures, fault: Fault
) -> None:
    _fault_then_recovery(rel_gateway, upstream, figures, fault, stream=False)


@pytest.mark.parametrize("fault", FAULTS, ids=[f.name for f in FAULTS])
def test_upstream_fault_mid_stream_gives_error_event_and_keeps_the_transcript(
    rel_gateway: RelGateway, upstream: Upstream, figures: Figures, fault: Fault
) -> None:
    _fault_then_recovery(rel_gateway, upstream, figures, fault, stream=True)


def test_stream_with_finish_but_without_done_is_a_complete_turn(
    rel_gateway: RelGateway, upstream: Upstream, figures: Figures
) -> None:
    gw = rel_gateway
    session_key, before = _seed(gw)
    figures.injected("upstream: stream without [DONE]")
    upstream.script(no_done("all of it"))
    answer = gw.turn(session_key, "no done please", stream=True)
    events = answer.sse_events()
    assert events[-1] == b"[DONE]"
    assert all("error" not in json.loads(e) for e in events[:-1])
    after = gw.transcript(session_key)
    assert after[: len(before)] == before
    assert [(e["role"], e["text"]) for e in after[len(before) :]] == [
        ("user", "no done please"),
        ("assistant", "all of it"),
    ]


def test_upstream_error_message_never_carries_the_provider_key(
    rel_gateway: RelGateway, upstream: Upstream, figures: Figures
) -> None:
    gw = rel_gateway
    figures.injected("upstream: error echoing the provider key")
    upstream.script(error(400, message=f"bad key {gw.provider_key} for model"))
    answer = gw.client.chat({"model": "openclaw", "messages": [{"role": "user", "content": "k"}]})
    error_ = assert_envelope(answer, 502)
    assert gw.provider_key not in str(error_["message"])
    assert "***" in str(error_["message"])


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_lone_surrogate_from_upstream_becomes_a_replacement_character(
    rel_gateway: RelGateway, upstream: Upstream, figures: Figures, stream: bool
) -> None:
    gw = rel_gateway
    session_key, before = _seed(gw)
    figures.injected("upstream: lone surrogate in the reply")
    upstream.script(reply("half \ud800 a pair"))
    answer = gw.turn(session_key, "say something odd", stream=stream)
    assert answer.status == 200, answer
    events = answer.sse_events() if stream else []
    assert all(b'"error"' not in e for e in events), events
    stored = gw.transcript(session_key)[len(before) :]
    assert [(e["role"], e["text"]) for e in stored] == [
        ("user", "say something odd"),
        ("assistant", "half \ufffd a pair"),
    ]
