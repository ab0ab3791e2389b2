"""The Anthropic Messages provider end to end: the openai SDK → gateway → fake /v1/messages."""

from __future__ import annotations

import base64
import json

import openai
import pytest

from tests import agent_fixtures
from tests.upstream import (
    anthropic_as_chat,
    count_completion_tokens,
    count_prompt_tokens,
    error,
    reply,
    tool_call,
)

agent_gateway = agent_fixtures.agent_gateway
agent_workspace = agent_fixtures.agent_workspace
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 16).decode()


@pytest.fixture
def client(agent_gateway) -> openai.OpenAI:
    return agent_gateway.client()


def _usage(request, text: str) -> dict[str, int]:
    prompt = count_prompt_tokens(anthropic_as_chat(request.body))
    completion = count_completion_tokens(text)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def test_text_reply_and_usage_come_from_the_messages_api(client, upstream):
    answer = client.chat.completions.create(
        model="openclaw/claude", messages=[{"role": "user", "content": "hello claude"}]
    )
    assert answer.choices[0].message.content == "You said: hello claude"
    assert answer.choices[0].finish_reason == "stop"
    request = upstream.requests[-1]
    assert request.path == "/v1/messages"
    assert request.headers["x-api-key"] == "anthropic-secret-key"
    assert request.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in request.headers
    assert request.body["model"] == "claude-test"
    assert request.body["system"] == "You are Claude here."
    assert request.body["max_tokens"] == 4096
    assert request.body["stream"] is True
    assert request.body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "hello claude"}]}
    ]
    assert answer.usage.model_dump() == _usage(request, "You said: hello claude") | {
        "completion_tokens_details": None,
        "prompt_tokens_details": None,
    }


def test_stream_yields_text_deltas_finish_and_usage(client, upstream):
    chunks = list(
        client.chat.completions.create(
            model="openclaw/claude",
            stream=True,
            stream_options={"include_usage": True},
            messages=[{"role": "user", "content": "stream from claude"}],
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "You said: stream from claude"
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) == 3
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage.total_tokens == _usage(upstream.requests[-1], text)["total_tokens"]


def test_options_images_and_stop_are_translated(client, upstream):
    client.chat.completions.create(
        model="openclaw/claude",
        max_tokens=77,
        temperature=0.5,
        top_p=0.9,
        stop="END",
        seed=7,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is this"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                ],
            }
        ],
    )
    body = upstream.requests[-1].body
    assert (body["max_tokens"], body["temperature"], body["top_p"]) == (77, 0.5, 0.9)
    assert body["stop_sequences"] == ["END"]
    assert "seed" not in body
    assert body["messages"][0]["content"] == [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {"type": "text", "text": "what is this"},
    ]


def test_max_tokens_stop_reason_is_finish_reason_length(client, upstream):
    upstream.script(reply("cut short", finish_reason="length"))
    answer = client.chat.completions.create(
        model="openclaw/claude", messages=[{"role": "user", "content": "long please"}]
    )
    assert answer.choices[0].finish_reason == "length"


def test_client_tool_use_round_trip_through_anthropic(client, upstream):
    tool = {
        "type": "function",
        "function": {
            "name": "lookup",
            "description": "Look something up",
            "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
        },
    }
    upstream.script(tool_call("lookup", '{"q": "otters"}', call_id="toolu_1"))
    with client.chat.completions.stream(
        model="openclaw/claude",
        messages=[{"role": "user", "content": "find otters"}],
        tools=[tool],
        tool_choice={"type": "function", "function": {"name": "lookup"}},
    ) as stream:
        first = stream.get_final_completion().choices[0]
    sent = upstream.requests[-1].body
    assert sent["tools"] == [
        {
            "name": "lookup",
            "description": "Look something up",
            "input_schema": tool["function"]["parameters"],
        },
        {
            "name": "current_time",
            "description": sent["tools"][1]["description"],
            "input_schema": sent["tools"][1]["input_schema"],
        },
    ]
    assert sent["tool_choice"] == {"type": "tool", "name": "lookup"}
    assert first.finish_reason == "tool_calls"
    [call] = first.message.tool_calls
    assert (call.id, call.function.name, json.loads(call.function.arguments)) == (
        "toolu_1",
        "lookup",
        {"q": "otters"},
    )

    upstream.script(reply("Otters found."))
    answer = client.chat.completions.create(
        model="openclaw/claude",
        tools=[tool],
        messages=[
            {"role": "user", "content": "find otters"},
            {"role": "assistant", "tool_calls": [call.model_dump(exclude_none=True)]},
            {"role": "tool", "tool_call_id": "toolu_1", "content": "3 otters"},
        ],
    )
    assert answer.choices[0].message.content == "Otters found."
    assert upstream.requests[-1].body["messages"][1:] == [
        {
            "role": "assistant",
            "content": [
                {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {"q": "otters"}}
            ],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "3 otters"}],
        },
    ]


def test_agent_tool_loop_over_anthropic_sums_usage(client, upstream):
    upstream.script(tool_call("current_time", "{}", call_id="toolu_t"), reply("It is now."))
    answer = client.chat.completions.create(
        model="openclaw/claude", messages=[{"role": "user", "content": "what time is it"}]
    )
    assert answer.choices[0].message.content == "It is now."
    first, second = upstream.requests[-2:]
    result = second.body["messages"][-1]["content"][0]
    assert (result["type"], result["tool_use_id"]) == ("tool_result", "toolu_t")
    assert "iso" in json.loads(result["content"])
    prompt = count_prompt_tokens(anthropic_as_chat(first.body)) + count_prompt_tokens(
        anthropic_as_chat(second.body)
    )
    assert answer.usage.prompt_tokens == prompt
    assert answer.usage.completion_tokens == 1 + count_completion_tokens("It is now.")


def test_anthropic_rate_limit_maps_to_429(client, upstream):
    upstream.script(error(429, "slow down", headers={"retry-after": "7"}))
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(
            model="openclaw/claude", messages=[{"role": "user", "content": "hi"}]
        )


def test_x_openclaw_model_switches_the_run_to_an_allowed_model(agent_gateway, upstream):
    answer = agent_gateway.client(default_headers={"x-openclaw-model": "ant/claude-test"})
    reply_ = answer.chat.completions.create(
        model="openclaw/main", messages=[{"role": "user", "content": "who are you"}]
    )
    assert reply_.choices[0].message.content == "You said: who are you"
    assert upstream.requests[-1].path == "/v1/messages"


def test_x_openclaw_model_not_allowed_is_400(agent_gateway, upstream):
    client = agent_gateway.client(default_headers={"x-openclaw-model": "ant/other-model"})
    with pytest.raises(openai.BadRequestError, match="not allowed"):
        client.chat.completions.create(
            model="openclaw/main", messages=[{"role": "user", "content": "hi"}]
        )
    assert upstream.requests == []
