"""The Chat Completions body of a stateful turn, its stored messages' JSON kept across turns, is
the body the gateway builds without keeping anything."""

from __future__ import annotations

import dataclasses
import json

import urllib3

from openclaw_gateway.agent.types import Image, Message, ProviderCall, ToolCall
from openclaw_gateway.config import ProviderSettings
from openclaw_gateway.providers import openai_compat
from openclaw_gateway.providers.openai_compat import OpenAICompatProvider

STORED = [
    Message("user", 'Question one: caf\u00e9 \u2603 "quoted" \\ back'),
    Message("assistant", "", tool_calls=(ToolCall("call_1", "lookup", '{"q": "x"}'),)),
    Message("tool", "result text", tool_call_id="call_1", is_error=True),
    Message("assistant", "Answer one."),
    Message("user", "look", images=(Image(mime="image/png", data="aGk="), Image(url="http://x/y"))),
    Message("assistant", "Answer two."),
]
FRESH = [Message("user", "And now?")]


def _provider() -> OpenAICompatProvider:
    settings = ProviderSettings(id="up", api="openai-completions", base_url="http://127.0.0.1:9/v1")
    return OpenAICompatProvider(settings, urllib3.PoolManager())


def _call(history: int, **extra: object) -> ProviderCall:
    return ProviderCall(
        model="m",
        system="Be brief.",
        messages=[*STORED, *FRESH],
        history=history,
        options={"temperature": 0.5, "stop": ["END"]},
        **extra,  # type: ignore[arg-type]
    )


def test_a_body_with_kept_history_is_the_body_without():
    provider = _provider()
    tools = {"tools": [{"type": "function", "function": {"name": "lookup"}}], "tool_choice": "auto"}
    for extra in ({}, tools):
        expected = json.loads(provider._body(_call(0, **extra)))
        for _ in range(2):  # the second time from the kept JSON
            assert json.loads(provider._body(_call(len(STORED), **extra))) == expected


def test_the_next_turn_encodes_only_what_its_transcript_gained(monkeypatch):
    provider = _provider()
    provider._body(_call(len(STORED)))
    encoded: list[Message] = []
    original = openai_compat._openai_message

    def counting(message: Message) -> dict[str, object]:
        encoded.append(message)
        return original(message)

    monkeypatch.setattr(openai_compat, "_openai_message", counting)
    # The store's copy after that turn: the same message objects, then the turn's entries.
    grown = [*STORED, FRESH[0], Message("assistant", "A reply.")]
    call = dataclasses.replace(_call(0), messages=[*grown, Message("user", "More?")])
    expected = json.loads(provider._body(call))
    encoded.clear()
    assert json.loads(provider._body(dataclasses.replace(call, history=len(grown)))) == expected
    assert encoded == [FRESH[0], grown[-1], call.messages[-1]]
    assert [messages for messages, _ in provider._history._sent.values()] == [grown]


def test_a_transcript_that_differs_before_its_end_is_encoded_in_full():
    provider = _provider()
    provider._body(_call(len(STORED)))
    changed = [Message("user", "Another start."), *STORED[1:]]  # the same last object
    call = dataclasses.replace(_call(0), messages=[*changed, *FRESH])
    expected = json.loads(provider._body(call))
    assert json.loads(provider._body(dataclasses.replace(call, history=len(changed)))) == expected


def test_a_call_whose_messages_are_all_stored_and_one_without_a_system_prompt():
    provider = _provider()
    call = dataclasses.replace(_call(0), messages=list(STORED), system="")
    expected = json.loads(provider._body(call))
    assert json.loads(provider._body(dataclasses.replace(call, history=len(STORED)))) == expected


def test_past_the_limit_what_was_kept_is_dropped():
    provider = _provider()
    expected = json.loads(provider._body(_call(0)))
    provider._history.limit = len(provider._history.encoded(STORED)) + 10  # one transcript
    other = [Message("user", "Another conversation."), Message("assistant", "Yes.")]
    provider._history.encoded(other)
    assert [messages for messages, _ in provider._history._sent.values()] == [other]
    assert json.loads(provider._body(_call(len(STORED)))) == expected
