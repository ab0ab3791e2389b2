"""SPEC 4, agent and session key: routing.py as a unit, then the same rules end to end."""

from __future__ import annotations

import re

import openai
import pytest

from openclaw_gateway.agent.errors import InvalidModel, InvalidRequest
from openclaw_gateway.config import parse_settings
from openclaw_gateway.routing import route
from tests.conftest import unique
from tests.rawhttp import post_chat

INVALID_MODEL = "Invalid `model`. Use `openclaw` or `openclaw/<agentId>`."
RESERVED = "`x-openclaw-session-key` cannot use reserved internal session namespaces."
WRITER_PROMPT = "You are a careful editor."


@pytest.fixture(scope="module")
def settings(tmp_path_factory):
    raw = {
        "models": {
            "providers": {"up": {"baseUrl": "http://127.0.0.1:9/v1", "models": ["m", "other"]}}
        },
        "agents": {
            "defaults": {"model": "up/m"},
            "list": [
                {"id": "main"},
                {"id": "writer", "default": True, "systemPrompt": WRITER_PROMPT},
                {"id": "picky", "models": ["up/other"]},
            ],
        },
    }
    return parse_settings(raw, {}, str(tmp_path_factory.mktemp("state")))


# ---- agent (unit)


@pytest.mark.parametrize(
    "model", [None, "", "openclaw", "OpenClaw", "openclaw/default", " openclaw "]
)
def test_default_agent_for_openclaw_or_absent(settings, model):
    assert route(settings, model=model).agent.id == "writer"


def test_default_agent_is_the_first_without_a_default_flag(tmp_path):
    raw = {"agents": {"list": [{"id": "alpha"}, {"id": "beta"}]}}
    assert route(parse_settings(raw, {}, str(tmp_path)), model="openclaw").agent.id == "alpha"


def test_default_agent_is_main_with_no_agents(tmp_path):
    assert route(parse_settings({}, {}, str(tmp_path))).agent.id == "main"


@pytest.mark.parametrize(
    "model",
    [
        "openclaw/main",
        "openclaw:main",
        "agent:main",
        "OPENCLAW/MAIN",
        "Agent:Main",
        "OpenClaw:main",
    ],
)
def test_model_forms_name_the_agent(settings, model):
    assert route(settings, model=model).agent.id == "main"


@pytest.mark.parametrize(
    "model",
    ["gpt-4o", "openclaw/", "openclaw/-bad", "openclaw/a b", "agent:", "main", "openclaw/x/y",
     "openclaw/" + "a" * 65, "up/m"],
)  # fmt: skip
def test_other_model_strings_are_invalid(settings, model):
    with pytest.raises(InvalidModel) as caught:
        route(settings, model=model)
    assert caught.value.message == INVALID_MODEL
    assert caught.value.status == 400


def test_unknown_agent_is_model_not_found(settings):
    with pytest.raises(InvalidModel) as caught:
        route(settings, model="openclaw/nobody")
    assert caught.value.message == "Unknown agent 'nobody'."
    assert caught.value.code == "model_not_found"


def test_agent_id_wins_over_model(settings):
    assert route(settings, agent_id="main", model="openclaw/picky").agent.id == "main"


def test_agent_id_is_case_insensitive_and_trimmed(settings):
    assert route(settings, agent_id="  MAIN ").agent.id == "main"


def test_unknown_agent_id_is_model_not_found(settings):
    with pytest.raises(InvalidModel, match=re.escape("Unknown agent 'ghost'.")):
        route(settings, agent_id="ghost")


# ---- session key (unit)


def test_session_key_wins(settings):
    r = route(settings, session_key="  My-Key ", conversation_id="c", user="u")
    assert (r.session_key, r.stateless) == ("my-key", False)


@pytest.mark.parametrize("key", ["subagent:a", "cron:b", "acp:c", "ACP:d"])
def test_reserved_prefixes_are_refused(settings, key):
    with pytest.raises(InvalidRequest) as caught:
        route(settings, session_key=key)
    assert caught.value.message == RESERVED


def test_conversation_id_comes_next(settings):
    r = route(settings, model="openclaw/main", conversation_id="chat-1", user="u")
    assert (r.session_key, r.stateless) == ("agent:main:conversation:chat-1", False)


def test_user_comes_next(settings):
    r = route(settings, model="openclaw/main", user="alice")
    assert (r.session_key, r.stateless) == ("agent:main:openai-user:alice", False)


def test_no_key_is_a_new_stateless_key(settings):
    first = route(settings, model="openclaw/main")
    second = route(settings, model="openclaw/main")
    assert first.stateless and second.stateless
    assert re.fullmatch(r"agent:main:openai:[0-9a-f-]{36}", first.session_key)
    assert first.session_key != second.session_key


def test_a_task_is_stateless_whatever_else_is_given(settings):
    r = route(settings, session_key="k", conversation_id="c", user="u", task=True)
    assert r.stateless
    assert r.session_key.startswith("agent:writer:openai:")


def test_blank_values_fall_through(settings):
    r = route(settings, session_key="  ", conversation_id="", user=" ")
    assert r.stateless


@pytest.mark.parametrize("value", ["a\nb", "x" * 513, "tab\there"])
def test_unsafe_session_values_are_refused(settings, value):
    with pytest.raises(InvalidRequest):
        route(settings, user=value)


# ---- model override (unit)


def test_model_override_allowed_by_the_agent_list(settings):
    assert route(settings, model="openclaw/picky", model_override="up/other").model_override == (
        "up/other"
    )


def test_model_override_not_in_the_agent_list_is_refused(settings):
    with pytest.raises(InvalidRequest):
        route(settings, model="openclaw/picky", model_override="up/m")


def test_model_override_of_a_provider_model(settings):
    assert route(settings, model_override="up/other").model_override == "up/other"


def test_model_override_of_an_unknown_model_is_refused(settings):
    with pytest.raises(InvalidRequest):
        route(settings, model_override="up/nope")


# ---- end to end


def _system_sent(upstream) -> str | None:
    first = upstream.requests[-1].body["messages"][0]
    return first["content"] if first["role"] == "system" else None


@pytest.mark.parametrize(
    "model",
    ["openclaw/writer", "openclaw:writer", "agent:writer", "OpenClaw/WRITER", "AGENT:Writer"],
)
def test_model_forms_reach_the_writer_agent(client, upstream, model):
    client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
    assert _system_sent(upstream) == WRITER_PROMPT


@pytest.mark.parametrize("model", ["openclaw", "openclaw/default", "openclaw/main"])
def test_default_model_forms_reach_main(client, upstream, model):
    client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
    assert _system_sent(upstream) is None


def test_agent_header_wins_over_model(client, upstream):
    client.chat.completions.create(
        model="openclaw/main",
        messages=[{"role": "user", "content": "hi"}],
        extra_headers={"x-openclaw-agent-id": "writer"},
    )
    assert _system_sent(upstream) == WRITER_PROMPT


def test_agent_header_routes_to_the_echo_agent(client, upstream):
    reply = client.chat.completions.create(
        model="openclaw",
        messages=[{"role": "user", "content": "ping"}],
        extra_headers={"x-openclaw-agent-id": "local"},
    )
    assert reply.choices[0].message.content == "echo: ping"


@pytest.mark.parametrize("model", ["gpt-4o", "openclaw/", "claude-3", "openclaw/bad id"])
def test_invalid_model_is_400_with_the_exact_message(gateway, model):
    response = post_chat(
        gateway.port, {"model": model, "messages": [{"role": "user", "content": "x"}]}
    )
    assert response.status == 400
    assert response.json()["error"] == {
        "message": INVALID_MODEL,
        "type": "invalid_request_error",
        "param": "model",
        "code": "model_not_found",
    }


def test_unknown_agent_is_400_model_not_found(gateway):
    payload = {"model": "openclaw/nobody", "messages": [{"role": "user", "content": "x"}]}
    response = post_chat(gateway.port, payload)
    assert response.status == 400
    error = response.json()["error"]
    assert (error["message"], error["code"]) == ("Unknown agent 'nobody'.", "model_not_found")


def test_unknown_agent_header_is_400(gateway):
    payload = {"messages": [{"role": "user", "content": "x"}]}
    response = post_chat(gateway.port, payload, {"x-openclaw-agent-id": "ghost"})
    assert response.status == 400
    assert response.json()["error"]["message"] == "Unknown agent 'ghost'."


def test_unknown_agent_is_the_sdk_bad_request_error(client):
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="openclaw/nobody", messages=[{"role": "user", "content": "x"}]
        )
    assert caught.value.code == "model_not_found"


def test_model_override_header_picks_the_provider_model(client, upstream):
    client.chat.completions.create(
        model="openclaw",
        messages=[{"role": "user", "content": "hi"}],
        extra_headers={"x-openclaw-model": "up/echo-model"},
    )
    assert upstream.requests[-1].body["model"] == "echo-model"


def test_model_override_header_of_an_unknown_model_is_400(gateway):
    payload = {"messages": [{"role": "user", "content": "x"}]}
    response = post_chat(gateway.port, payload, {"x-openclaw-model": "up/gpt-99"})
    assert response.status == 400


@pytest.mark.parametrize("user", ["John Smith", "José", "ユーザー", "a@b.example"])
def test_printable_users_get_their_own_session(settings, user):
    r = route(settings, model="openclaw/main", user=user)
    assert (r.session_key, r.stateless) == (f"agent:main:openai-user:{user}", False)


def test_a_user_with_spaces_and_unicode_is_remembered(gateway, upstream):
    user = f"José Smith {unique('u')}"
    for text in ("first", "second"):
        response = post_chat(
            gateway.port, {"user": user, "messages": [{"role": "user", "content": text}]}
        )
        assert response.status == 200
    assert [m["content"] for m in upstream.requests[-1].body["messages"]] == [
        "first",
        "You said: first",
        "second",
    ]


def test_random_uuids_are_version_4_uuids():
    import uuid

    from openclaw_gateway.routing import random_uuid

    seen = set()
    for _ in range(200):
        text = random_uuid()
        parsed = uuid.UUID(text)
        assert str(parsed) == text
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
        seen.add(text)
    assert len(seen) == 200
