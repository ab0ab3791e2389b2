"""One agent config, one result: HTTP JSON, HTTP SSE and the CLI run the same agent loop."""

from __future__ import annotations

from tests import agent_fixtures
from tests.agent_fixtures import post, run_cli, sse_payloads

agent_gateway = agent_fixtures.agent_gateway
agent_workspace = agent_fixtures.agent_workspace
MESSAGE = '[[upstream:tool_call name=workspace_read arguments={"path": "hello.txt"}]]'


def test_json_sse_and_cli_give_identical_results(agent_gateway, upstream):
    body = {"model": "openclaw/tooly", "messages": [{"role": "user", "content": MESSAGE}]}
    plain = post(agent_gateway, body).json()
    payloads = sse_payloads(
        post(agent_gateway, body | {"stream": True, "stream_options": {"include_usage": True}})
    )
    cli = run_cli(agent_gateway, "--agent", "tooly", "--message", MESSAGE)

    chunks = [p for p in payloads if isinstance(p, dict) and p.get("choices")]
    streamed = {
        "text": "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks),
        "finish": chunks[-1]["choices"][0]["finish_reason"],
        "usage": payloads[-2]["usage"],
    }
    from_json = {
        "text": plain["choices"][0]["message"]["content"],
        "finish": plain["choices"][0]["finish_reason"],
        "usage": plain["usage"],
    }
    from_cli = {"text": cli["text"], "finish": cli["finishReason"], "usage": cli["usage"]}
    assert from_json == streamed == from_cli
    assert from_json["text"] == f"You said: {MESSAGE}"
    # Each surface ran the tool loop: two upstream calls each, the second with the file's text.
    tool_results = [
        r.body["messages"][-1]["content"] for r in upstream.requests if len(r.body["messages"]) > 2
    ]
    assert tool_results == ["hello from the workspace"] * 3
