"""Agent tools run by the gateway: the loop, its bound, what the model and the client see."""

from __future__ import annotations

import json
from pathlib import Path

from tests import agent_fixtures
from tests.agent_fixtures import post, sse_payloads
from tests.conftest import unique
from tests.upstream import (
    count_completion_tokens,
    count_prompt_tokens,
    error,
    reply,
    tool_call,
    tool_calls,
)

agent_gateway = agent_fixtures.agent_gateway
agent_workspace = agent_fixtures.agent_workspace


def _tool_messages(request) -> list[dict]:
    return [m for m in request.body["messages"] if m["role"] == "tool"]


def test_agent_tool_loop_of_three_rounds_feeds_each_result_back(
    agent_gateway, agent_workspace: Path, upstream
):
    name = f"{unique('note')}.txt"
    upstream.script(
        tool_call("current_time", '{"timezone": "UTC"}', call_id="c1"),
        tool_call("workspace_write", json.dumps({"path": name, "content": "abc"}), call_id="c2"),
        tool_call("workspace_read", json.dumps({"path": name}), call_id="c3"),
        reply("all done"),
    )
    response = post(
        agent_gateway, {"model": "openclaw/tooly", "messages": [{"role": "user", "content": "go"}]}
    )
    assert response.status == 200, response.data
    body = response.json()
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "all done"}
    assert body["choices"][0]["finish_reason"] == "stop"
    rounds = upstream.requests[-4:]
    assert [len(_tool_messages(r)) for r in rounds] == [0, 1, 2, 3]
    first, second, third = _tool_messages(rounds[3])
    assert first["tool_call_id"] == "c1" and json.loads(first["content"])["timezone"] == "UTC"
    assert second == {"role": "tool", "tool_call_id": "c2", "content": f"wrote 3 bytes to {name}"}
    assert third == {"role": "tool", "tool_call_id": "c3", "content": "abc"}
    assert (agent_workspace / name).read_text() == "abc"


def test_agent_tools_are_offered_with_the_client_tools_and_never_streamed(agent_gateway, upstream):
    response = post(
        agent_gateway,
        {
            "model": "openclaw/tooly",
            "stream": True,
            "messages": [
                {"role": "user", "content": "[[upstream:tool_call name=current_time arguments={}]]"}
            ],
        },
    )
    chunks = [p for p in sse_payloads(response) if isinstance(p, dict) and p.get("choices")]
    assert not any("tool_calls" in c["choices"][0]["delta"] for c in chunks)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert text.startswith("You said: [[upstream:tool_call name=current_time")
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    offered = {t["function"]["name"] for t in upstream.requests[-2].body["tools"]}
    assert offered == {
        "current_time",
        "workspace_list",
        "workspace_read",
        "workspace_write",
        "web_fetch",
    }


def test_denied_tools_are_not_offered(agent_gateway, upstream):
    post(
        agent_gateway, {"model": "openclaw/denied", "messages": [{"role": "user", "content": "x"}]}
    )
    offered = {t["function"]["name"] for t in upstream.requests[-1].body["tools"]}
    assert offered == {"current_time", "workspace_list", "workspace_read"}


def test_agent_without_allowed_tools_offers_none(agent_gateway, upstream):
    post(agent_gateway, {"model": "openclaw/main", "messages": [{"role": "user", "content": "x"}]})
    assert "tools" not in upstream.requests[-1].body


def test_usage_is_summed_over_the_tool_rounds(agent_gateway, upstream):
    upstream.script(tool_call("current_time", "{}", call_id="u1"), reply("the end"))
    response = post(
        agent_gateway,
        {"model": "openclaw/tooly", "messages": [{"role": "user", "content": "time please"}]},
    )
    first, second = upstream.requests[-2:]
    prompt = count_prompt_tokens(first.body["messages"]) + count_prompt_tokens(
        second.body["messages"]
    )
    completion = 1 + count_completion_tokens("the end")
    assert response.json()["usage"] == {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def test_round_limit_ends_the_run_with_a_clear_error(agent_gateway, upstream):
    upstream.script(*(tool_call("current_time", "{}", call_id=f"l{i}") for i in range(3)))
    response = post(
        agent_gateway,
        {"model": "openclaw/limited", "messages": [{"role": "user", "content": "loop"}]},
    )
    assert response.status == 502
    error = response.json()["error"]
    assert error["code"] == "tool_round_limit"
    assert "2 tool rounds" in error["message"]
    assert response.headers["x-should-retry"] == "false"
    assert len(upstream.requests) == 3


def test_round_limit_in_a_stream_is_an_error_event(agent_gateway, upstream):
    upstream.script(*(tool_call("current_time", "{}", call_id=f"s{i}") for i in range(3)))
    response = post(
        agent_gateway,
        {
            "model": "openclaw/limited",
            "stream": True,
            "messages": [{"role": "user", "content": "loop"}],
        },
    )
    payloads = sse_payloads(response)
    assert payloads[-2]["error"]["code"] == "tool_round_limit"
    assert payloads[-1] == "[DONE]"


def test_tool_error_goes_back_to_the_model_as_a_tool_message(agent_gateway, upstream):
    upstream.script(
        tool_call("workspace_read", '{"path": "../../etc/passwd"}', call_id="e1"), reply("sorry")
    )
    response = post(
        agent_gateway,
        {"model": "openclaw/tooly", "messages": [{"role": "user", "content": "read"}]},
    )
    assert response.json()["choices"][0]["message"]["content"] == "sorry"
    [result] = _tool_messages(upstream.requests[-1])
    assert result["content"].startswith("Error: '..' is refused")


def test_mixed_turn_runs_agent_tools_and_returns_only_client_calls(agent_gateway, upstream):
    client_tool = {"type": "function", "function": {"name": "lookup", "parameters": {}}}
    upstream.script(
        tool_calls([("current_time", "{}", "m1"), ("lookup", '{"q": 1}', "m2")]),
        reply("done"),
    )
    user = unique("mixed")
    response = post(
        agent_gateway,
        {
            "model": "openclaw/tooly",
            "user": user,
            "stream": True,
            "tools": [client_tool],
            "messages": [{"role": "user", "content": "both"}],
        },
    )
    chunks = [p for p in sse_payloads(response) if isinstance(p, dict) and p.get("choices")]
    calls = [d for c in chunks for d in c["choices"][0]["delta"].get("tool_calls", [])]
    assert calls[0] == {
        "index": 0,
        "id": "m2",
        "type": "function",
        "function": {"name": "lookup", "arguments": ""},
    }
    assert {c.get("id") for c in calls} <= {"m2", None}
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    # The client answers its call; the agent tool's result was kept with the turn.
    post(
        agent_gateway,
        {
            "model": "openclaw/tooly",
            "user": user,
            "tools": [client_tool],
            "messages": [
                {"role": "user", "content": "both"},
                {
                    "role": "assistant",
                    "tool_calls": [
                        {
                            "id": "m2",
                            "type": "function",
                            "function": {"name": "lookup", "arguments": '{"q": 1}'},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "m2", "content": "found"},
            ],
        },
    )
    sent = upstream.requests[-1].body["messages"]
    assert [m["role"] for m in sent[-4:]] == ["user", "assistant", "tool", "tool"]
    assert [c["id"] for c in sent[-3]["tool_calls"]] == ["m1", "m2"]
    assert [m["tool_call_id"] for m in sent[-2:]] == ["m1", "m2"]


def test_stateful_run_stores_its_tool_exchanges_in_the_transcript(agent_gateway, upstream):
    user = unique("stored")
    upstream.script(tool_call("current_time", "{}", call_id="st1"), reply("noted"))
    first = {"model": "openclaw/tooly", "user": user}
    post(agent_gateway, first | {"messages": [{"role": "user", "content": "one"}]})
    post(agent_gateway, first | {"messages": [{"role": "user", "content": "two"}]})
    sent = upstream.requests[-1].body["messages"][1:]  # after the system prompt
    assert [m["role"] for m in sent] == ["user", "assistant", "tool", "assistant", "user"]
    assert sent[1]["tool_calls"][0]["id"] == "st1"
    assert sent[2]["tool_call_id"] == "st1" and "iso" in json.loads(sent[2]["content"])
    assert (sent[3]["content"], sent[4]["content"]) == ("noted", "two")


def test_upstream_failure_after_an_agent_tool_ran_says_do_not_retry(agent_gateway, upstream):
    upstream.script(tool_call("current_time", "{}", call_id="r1"), error(400, "bad"))
    response = post(
        agent_gateway, {"model": "openclaw/tooly", "messages": [{"role": "user", "content": "t"}]}
    )
    assert response.status == 502
    assert response.headers["x-should-retry"] == "false"


def test_upstream_failure_before_any_tool_ran_may_be_retried(agent_gateway, upstream):
    upstream.script(error(400, "bad"))
    response = post(
        agent_gateway, {"model": "openclaw/tooly", "messages": [{"role": "user", "content": "t"}]}
    )
    assert response.status == 502
    assert "x-should-retry" not in response.headers
