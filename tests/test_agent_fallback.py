"""Model fallbacks: the next model only while nothing has reached the client."""

from __future__ import annotations

import openai
import pytest

from tests import agent_fixtures
from tests.agent_fixtures import post, sse_payloads
from tests.upstream import drop_mid_stream, error, reply

agent_gateway = agent_fixtures.agent_gateway
agent_workspace = agent_fixtures.agent_workspace


def test_503_from_the_primary_falls_back_to_the_next_model(agent_gateway, upstream):
    upstream.script(error(503, "overloaded"), reply("from the fallback"))
    answer = agent_gateway.client().chat.completions.create(
        model="openclaw/fallback", messages=[{"role": "user", "content": "hi"}]
    )
    assert answer.choices[0].message.content == "from the fallback"
    assert [r.body["model"] for r in upstream.requests] == ["primary-model", "echo-model"]


def test_stream_falls_back_before_the_first_delta(agent_gateway, upstream):
    upstream.script(error(503), reply("second model"))
    response = post(
        agent_gateway,
        {
            "model": "openclaw/fallback",
            "stream": True,
            "messages": [{"role": "user", "content": "hi"}],
        },
    )
    chunks = [p for p in sse_payloads(response) if isinstance(p, dict) and p.get("choices")]
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == "second model"
    assert len(upstream.requests) == 2


def test_no_fallback_after_the_first_delta_reached_the_client(agent_gateway, upstream):
    upstream.script(drop_mid_stream(after_chunks=1, text="one two three"), reply("never"))
    response = post(
        agent_gateway,
        {
            "model": "openclaw/fallback",
            "stream": True,
            "messages": [{"role": "user", "content": "hi"}],
        },
    )
    payloads = sse_payloads(response)
    content = [p for p in payloads if isinstance(p, dict) and p.get("choices")]
    assert content[1]["choices"][0]["delta"]["content"] == "one "
    assert "error" in payloads[-2] and payloads[-1] == "[DONE]"
    assert [r.body["model"] for r in upstream.requests] == ["primary-model"]


def test_non_retryable_status_does_not_fall_back(agent_gateway, upstream):
    upstream.script(error(400, "bad request"), reply("never"))
    with pytest.raises(openai.APIStatusError) as caught:
        agent_gateway.client().chat.completions.create(
            model="openclaw/fallback", messages=[{"role": "user", "content": "hi"}]
        )
    assert caught.value.status_code == 502
    assert len(upstream.requests) == 1
