"""The Chat Completions body the gateway writes is the JSON of the body's dict: plain text
messages are written directly, everything else is encoded from its dict."""

from __future__ import annotations

import json

import urllib3
from hypothesis import given, settings
from hypothesis import strategies as st

from openclaw_gateway.agent.types import Image, Message, ProviderCall, ToolCall
from openclaw_gateway.config import ProviderSettings
from openclaw_gateway.providers.openai_compat import (
    OpenAICompatProvider,
    _encode_body,
    _openai_message,
    messages_json,
)

MESSAGES = [
    Message("user", 'Question one: caf\u00e9 \u2603 "quoted" \\ back\n\ttab \x00 \x1f \u2028'),
    Message("assistant", "", tool_calls=(ToolCall("call_1", "lookup", '{"q": "x"}'),)),
    Message("tool", "result text", tool_call_id="call_1", is_error=True),
    Message("assistant", "Answer one."),
    Message("user", "look", images=(Image(mime="image/png", data="aGk="), Image(url="http://x/y"))),
    Message("user", "", images=(Image(url="http://x/z"),)),
    Message("assistant", ""),
    Message("user", "\U0001f600 emoji and </script>"),
]


def _reference(system: str, messages: list[Message]) -> str:
    """What ``json`` writes for the messages' dicts."""
    dicts = [{"role": "system", "content": system}] if system else []
    return _encode_body(dicts + [_openai_message(m) for m in messages])


def test_every_kind_of_message_is_written_as_json_writes_its_dict():
    for system in ("", 'Be brief.\n"Really".'):
        assert messages_json(system, MESSAGES) == _reference(system, MESSAGES)


@settings(max_examples=200, derandomize=True)
@given(
    st.lists(
        st.tuples(st.sampled_from(["user", "assistant", "tool"]), st.text()),
        max_size=6,
    ),
    st.text(),
)
def test_any_text_is_written_as_json_writes_it(turns, system):
    messages = [
        Message(role, text, tool_call_id="c" if role == "tool" else None) for role, text in turns
    ]
    assert messages_json(system, messages) == _reference(system, messages)


def test_the_body_is_the_json_of_the_request_dict():
    settings_ = ProviderSettings(
        id="up", api="openai-completions", base_url="http://127.0.0.1:9/v1"
    )
    provider = OpenAICompatProvider(settings_, urllib3.PoolManager())
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {}}}]
    call = ProviderCall(
        model='m"odel',
        system="Be brief.",
        messages=MESSAGES,
        tools=tools,
        tool_choice="auto",
        options={"temperature": 0.5, "stop": ["END"], "seed": 7},
    )
    body = provider._body(call)
    assert json.loads(body) == {
        "model": 'm"odel',
        "messages": json.loads(_reference("Be brief.", MESSAGES)),
        "stream": True,
        "stream_options": {"include_usage": True},
        "temperature": 0.5,
        "stop": ["END"],
        "seed": 7,
        "tools": tools,
        "tool_choice": "auto",
    }
    assert list(json.loads(body))[:2] == ["model", "messages"]


def test_a_body_without_options_or_tools_is_the_json_of_its_dict():
    settings_ = ProviderSettings(
        id="up", api="openai-completions", base_url="http://127.0.0.1:9/v1"
    )
    provider = OpenAICompatProvider(settings_, urllib3.PoolManager())
    call = ProviderCall(model="m", system="", messages=MESSAGES[:1])
    expected = {
        "model": "m",
        "messages": json.loads(_reference("", MESSAGES[:1])),
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    assert provider._body(call) == _encode_body(expected).encode()
