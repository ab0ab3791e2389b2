"""The walking skeleton end to end: the openai SDK through a real gunicorn gateway."""

from __future__ import annotations

from tests.conftest import unique


def test_sdk_chat_completion_reaches_upstream_and_returns_its_reply(client, upstream):
    reply = client.chat.completions.create(
        model="openclaw", messages=[{"role": "user", "content": "hello gateway"}]
    )
    assert reply.choices[0].message.content == "You said: hello gateway"
    assert reply.model == "openclaw"
    assert upstream.requests[-1].body["messages"][-1] == {
        "role": "user",
        "content": "hello gateway",
    }


def test_sdk_stream_yields_role_chunk_content_and_finish(client, upstream):
    stream = client.chat.completions.create(
        model="openclaw", stream=True, messages=[{"role": "user", "content": "stream me"}]
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "You said: stream me"
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_second_call_with_same_user_sees_first_exchange(client, upstream):
    user = unique("user")
    client.chat.completions.create(
        model="openclaw", user=user, messages=[{"role": "user", "content": "first"}]
    )
    client.chat.completions.create(
        model="openclaw", user=user, messages=[{"role": "user", "content": "second"}]
    )
    sent = upstream.requests[-1].body["messages"]
    assert [(m["role"], m["content"]) for m in sent] == [
        ("user", "first"),
        ("assistant", "You said: first"),
        ("user", "second"),
    ]
