"""How chat UIs identify a conversation (SPEC 4): Open WebUI's chat id, resent history, tasks."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from openclaw_gateway.sessions.sqlite import SqliteSessionStore
from tests.conftest import GatewayProcess, unique

SYSTEM = {"role": "system", "content": "You are a helpful assistant."}


@pytest.fixture
def store(gateway: GatewayProcess) -> Iterator[SqliteSessionStore]:
    """The shared gateway's own SQLite file (the default path in its state dir)."""
    opened = SqliteSessionStore(str(gateway.state_dir / "gateway" / "sessions.sqlite3"))
    yield opened
    opened.close()


def open_webui_turn(client, chat_id: str, messages: list[dict[str, str]], task: str = "") -> str:
    """One request as Open WebUI sends it: streamed, the whole chat resent, the chat id header."""
    headers = {"X-OpenWebUI-Chat-Id": chat_id, "X-OpenWebUI-User-Id": "u-1"}
    if task:
        headers["X-OpenWebUI-Task"] = task
    stream = client.chat.completions.create(
        model="openclaw", stream=True, messages=messages, extra_headers=headers
    )
    return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)


def test_open_webui_chat_is_one_transcript_with_each_turn_once_and_no_task_turn(
    client, upstream, store
):
    chat_id = unique("owui")
    history: list[dict[str, str]] = []
    for text in ("Hi there", "Tell me more", "Thanks"):
        history.append({"role": "user", "content": text})
        reply = open_webui_turn(client, chat_id, [SYSTEM, *history])
        history.append({"role": "assistant", "content": reply})
        if text == "Hi there":
            title_prompt = (
                "### Task:\nGenerate a concise, 3-5 word title for the chat.\n"
                f"<chat_history>\nUSER: {text}\nASSISTANT: {reply}\n</chat_history>"
            )
            open_webui_turn(
                client, chat_id, [{"role": "user", "content": title_prompt}], "title_generation"
            )

    key = f"agent:main:conversation:{chat_id}"
    assert [(e["role"], e["text"]) for e in store.load(key)] == [
        ("user", "Hi there"),
        ("assistant", "You said: Hi there"),
        ("user", "Tell me more"),
        ("assistant", "You said: Tell me more"),
        ("user", "Thanks"),
        ("assistant", "You said: Thanks"),
    ]
    [info] = [s for s in store.list_sessions() if s.key == key]
    assert info.message_count == 6
    # The last turn went upstream with every earlier turn exactly once.
    last = upstream.requests[-1].body["messages"]
    assert last == [SYSTEM, *history[:-1]]
    # The title task ran without the conversation around it.
    [title] = [r.body for r in upstream.requests if "### Task:" in str(r.body["messages"][-1])]
    assert [m["role"] for m in title["messages"]] == ["user"]


def test_task_request_with_a_chat_id_leaves_the_chat_untouched(client, upstream, store):
    chat_id = unique("owui")
    messages = [{"role": "user", "content": "### Task:\nSuggest 3 tags for the chat."}]
    open_webui_turn(client, chat_id, messages, "tags_generation")
    assert store.load(f"agent:main:conversation:{chat_id}") == []
