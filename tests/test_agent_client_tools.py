"""Client tools (OpenAI function calling) through the agent loop, with the openai SDK."""

from __future__ import annotations

import json

import openai
import pytest

from tests.conftest import unique
from tests.upstream import reply, tool_call

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
ASK = '[[upstream:tool_call name=get_weather arguments={"city": "Paris"}]]'


def _followup(first_message, result: str = "18C and sunny") -> list[dict]:
    call = first_message.tool_calls[0]
    return [
        {"role": "user", "content": ASK},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.function.name, "arguments": call.function.arguments},
                }
            ],
        },
        {"role": "tool", "tool_call_id": call.id, "content": result},
    ]


def test_client_tool_call_json_round_trip_continues_the_turn(client, upstream):
    first = client.chat.completions.create(
        model="openclaw", messages=[{"role": "user", "content": ASK}], tools=[WEATHER]
    )
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert [
        (c.function.name, json.loads(c.function.arguments)) for c in choice.message.tool_calls
    ] == [("get_weather", {"city": "Paris"})]
    assert upstream.requests[-1].body["tools"] == [WEATHER]

    upstream.script(reply("It is 18C in Paris."))
    second = client.chat.completions.create(
        model="openclaw", messages=_followup(choice.message), tools=[WEATHER]
    )
    assert second.choices[0].message.content == "It is 18C in Paris."
    sent = upstream.requests[-1].body["messages"]
    assert sent[-2]["tool_calls"][0]["id"] == choice.message.tool_calls[0].id
    assert sent[-1] == {
        "role": "tool",
        "tool_call_id": choice.message.tool_calls[0].id,
        "content": "18C and sunny",
    }


def test_client_tool_call_stream_helper_accumulates_the_call(client, upstream):
    upstream.script(tool_call("get_weather", '{"city": "Paris", "unit": "C"}', call_id="call_w1"))
    with client.chat.completions.stream(
        model="openclaw", messages=[{"role": "user", "content": "weather?"}], tools=[WEATHER]
    ) as stream:
        final = stream.get_final_completion()
    choice = final.choices[0]
    assert choice.finish_reason == "tool_calls"
    [call] = choice.message.tool_calls
    assert (call.id, call.type, call.function.name) == ("call_w1", "function", "get_weather")
    assert json.loads(call.function.arguments) == {"city": "Paris", "unit": "C"}

    upstream.script(reply("Sunny."))
    with client.chat.completions.stream(
        model="openclaw", messages=_followup(choice.message), tools=[WEATHER]
    ) as stream:
        text = stream.get_final_completion().choices[0].message.content
    assert text == "Sunny."
    assert upstream.requests[-1].body["messages"][-1]["role"] == "tool"


def test_raw_stream_sends_name_first_then_argument_fragments(client, upstream):
    upstream.script(tool_call("get_weather", '{"city": "Paris"}', call_id="call_r1"))
    chunks = list(
        client.chat.completions.create(
            model="openclaw",
            stream=True,
            messages=[{"role": "user", "content": "weather?"}],
            tools=[WEATHER],
        )
    )
    deltas = [d for c in chunks if c.choices for d in (c.choices[0].delta.tool_calls or [])]
    head = deltas[0]
    assert (head.index, head.id, head.type, head.function.name) == (
        0,
        "call_r1",
        "function",
        "get_weather",
    )
    assert all(d.function.name is None for d in deltas[1:])
    assert "".join(d.function.arguments or "" for d in deltas) == '{"city": "Paris"}'
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_stateful_tool_round_trip_stores_call_and_result_once(client, upstream):
    user = unique("tools")
    first = client.chat.completions.create(
        model="openclaw", user=user, messages=[{"role": "user", "content": ASK}], tools=[WEATHER]
    )
    upstream.script(reply("It is sunny."))
    client.chat.completions.create(
        model="openclaw", user=user, messages=_followup(first.choices[0].message), tools=[WEATHER]
    )
    client.chat.completions.create(
        model="openclaw", user=user, messages=[{"role": "user", "content": "thanks"}]
    )
    sent = upstream.requests[-1].body["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "tool", "assistant", "user"]
    assert sent[1]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert sent[2]["content"] == "18C and sunny"
    assert sent[3]["content"] == "It is sunny."


def test_tool_choice_naming_an_unknown_function_is_400(client):
    with pytest.raises(openai.BadRequestError, match="Invalid tools/tool_choice"):
        client.chat.completions.create(
            model="openclaw",
            messages=[{"role": "user", "content": "hi"}],
            tools=[WEATHER],
            tool_choice={"type": "function", "function": {"name": "nope"}},
        )


def test_required_tool_choice_answered_in_text_is_502(client, upstream):
    upstream.script(reply("no tools for you"))
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(
            model="openclaw",
            messages=[{"role": "user", "content": "hi"}],
            tools=[WEATHER],
            tool_choice="required",
        )
    assert caught.value.status_code == 502
    assert caught.value.body["type"] == "api_error"
