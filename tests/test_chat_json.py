"""SPEC 3, non-streaming: the completion object, usage, finish reasons, upstream errors mapped."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import openai
import pytest

from tests.conftest import GatewayProcess, base_config, free_port
from tests.rawhttp import post_chat
from tests.upstream import (
    count_completion_tokens,
    count_prompt_tokens,
    error,
    reply,
    tool_call,
)

HI = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def faulty_gateway(upstream_server, tmp_path_factory) -> Iterator[GatewayProcess]:
    """Agents whose providers fail: ``dead`` (nothing listens), ``impatient`` (0.3 s timeout)."""
    config = base_config(upstream_server)
    providers = config["models"]["providers"]
    providers["dead"] = {
        "baseUrl": f"http://127.0.0.1:{free_port()}/v1",
        "api": "openai-completions",
        "models": ["m"],
    }
    providers["impatient"] = {
        **providers["up"],
        "timeoutSeconds": 0.3,
    }
    config["agents"]["list"] += [
        {"id": "dead", "model": "dead/m"},
        {"id": "impatient", "model": "impatient/echo-model"},
    ]
    process = GatewayProcess(config, tmp_path_factory.mktemp("faulty")).start()
    yield process
    process.stop()


def _create(client: openai.OpenAI, **kwargs):
    kwargs.setdefault("model", "openclaw")
    kwargs.setdefault("messages", HI)
    return client.chat.completions.create(**kwargs)


# ---- the completion object


def test_completion_object_has_the_openai_shape(gateway, upstream):
    before = int(time.time())
    response = post_chat(gateway.port, {"model": "openclaw", "messages": HI})
    after = time.time()
    assert response.status == 200
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    body = response.json()
    assert set(body) == {"id", "object", "created", "model", "choices", "usage"}
    assert re.fullmatch(
        r"chatcmpl_[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}",
        body["id"],
    )
    assert body["object"] == "chat.completion"
    assert isinstance(body["created"], int)
    assert before <= body["created"] <= after  # Unix seconds, taken during the request
    assert body["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "You said: hi"},
            "finish_reason": "stop",
        }
    ]


def test_each_completion_gets_its_own_id(client, upstream):
    assert _create(client).id != _create(client).id


@pytest.mark.parametrize("model", ["openclaw", "openclaw/main", "OpenClaw:Writer", "agent:local"])
def test_model_is_echoed_as_sent(client, upstream, model):
    assert _create(client, model=model).model == model


def test_model_is_openclaw_when_absent(gateway, upstream):
    assert post_chat(gateway.port, {"messages": HI}).json()["model"] == "openclaw"


def test_usage_is_the_upstream_count(gateway, upstream):
    body = post_chat(gateway.port, {"messages": [{"role": "user", "content": "a b c d"}]}).json()
    sent = upstream.requests[-1].body["messages"]
    prompt = count_prompt_tokens(sent)
    completion = count_completion_tokens("You said: a b c d")
    assert body["usage"] == {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def test_usage_numbers_are_passed_through_unchanged(client, upstream):
    upstream.script(reply("ok", usage={"prompt_tokens": 123, "completion_tokens": 45}))
    usage = _create(client).usage
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (123, 45, 168)


def test_finish_reason_length_is_passed_through(client, upstream):
    upstream.script(reply("cut sh", finish_reason="length"))
    choice = _create(client).choices[0]
    assert choice.finish_reason == "length"
    assert choice.message.content == "cut sh"


def test_the_reply_is_the_upstream_text(client, upstream):
    upstream.script(reply('Ünïcödé ✓ "quoted" \n newline', chunks=4))
    assert _create(client).choices[0].message.content == 'Ünïcödé ✓ "quoted" \n newline'


def test_an_empty_reply_is_no_response_from_openclaw(client, upstream):
    upstream.script(reply(""))
    assert _create(client).choices[0].message.content == "No response from OpenClaw."


def test_client_tool_calls_are_returned(client, upstream):
    upstream.script(tool_call("get_weather", '{"city": "Paris"}', call_id="call_abc"))
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]
    choice = _create(client, tools=tools).choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    [call] = choice.message.tool_calls
    assert (call.id, call.type, call.function.name, call.function.arguments) == (
        "call_abc",
        "function",
        "get_weather",
        '{"city": "Paris"}',
    )


def test_the_local_agent_answers_with_the_echo_provider(client, upstream):
    completion = _create(
        client, model="openclaw/local", messages=[{"role": "user", "content": "yo"}]
    )
    assert completion.choices[0].message.content == "echo: yo"
    assert completion.usage.total_tokens > 0
    assert upstream.requests == []


# ---- upstream errors


def test_upstream_429_is_429(client, upstream):
    upstream.script(error(429, "slow down"))
    with pytest.raises(openai.RateLimitError) as caught:
        _create(client)
    assert caught.value.status_code == 429
    assert caught.value.body["code"] == "upstream_rate_limited"


@pytest.mark.parametrize("status", [500, 502, 503])
def test_upstream_5xx_is_502(gateway, upstream, status):
    upstream.script(error(status))
    response = post_chat(gateway.port, {"messages": HI})
    assert response.status == 502
    assert response.json()["error"]["type"] == "api_error"


def test_upstream_400_is_502_with_its_message(gateway, upstream):
    upstream.script(error(400, "bad model parameter"))
    response = post_chat(gateway.port, {"messages": HI})
    assert response.status == 502
    assert "bad model parameter" in response.json()["error"]["message"]


def test_upstream_dropping_the_connection_is_502(gateway, upstream):
    response = post_chat(
        gateway.port, {"messages": [{"role": "user", "content": "[[upstream:drop]]"}]}
    )
    assert response.status == 502
    assert response.json()["error"]["message"] == "The model provider closed the connection."


def test_upstream_invalid_json_is_502(gateway, upstream):
    response = post_chat(
        gateway.port, {"messages": [{"role": "user", "content": "[[upstream:invalid_json]]"}]}
    )
    assert response.status == 502


def test_upstream_never_answering_is_504(faulty_gateway, upstream):
    payload = {
        "model": "openclaw/impatient",
        "messages": [{"role": "user", "content": "[[upstream:stall seconds=10]]"}],
    }
    response = post_chat(faulty_gateway.port, payload)
    assert response.status == 504
    assert response.json()["error"]["code"] == "upstream_timeout"
    upstream.wait_for(lambda u: u.closed_connections >= 1)


def test_upstream_timeout_is_the_sdk_internal_server_error(faulty_gateway, upstream):
    client = faulty_gateway.client()
    with pytest.raises(openai.InternalServerError) as caught:
        _create(
            client,
            model="openclaw/impatient",
            messages=[{"role": "user", "content": "[[upstream:stall seconds=10]]"}],
        )
    assert caught.value.status_code == 504


def test_an_unreachable_upstream_is_502(faulty_gateway):
    response = post_chat(faulty_gateway.port, {"model": "openclaw/dead", "messages": HI})
    assert response.status == 502
    assert response.json()["error"] == {
        "message": "The model provider could not be reached.",
        "type": "api_error",
        "param": None,
        "code": "upstream_unreachable",
    }


def test_a_failed_run_leaves_the_gateway_serving(faulty_gateway, upstream):
    post_chat(faulty_gateway.port, {"model": "openclaw/dead", "messages": HI})
    assert post_chat(faulty_gateway.port, {"messages": HI}).status == 200


def test_tool_choice_required_that_the_model_ignores_is_502(gateway, upstream):
    payload = {
        "messages": HI,
        "tools": [{"type": "function", "function": {"name": "lookup"}}],
        "tool_choice": "required",
    }
    response = post_chat(gateway.port, payload)
    assert response.status == 502
    assert response.json()["error"]["type"] == "api_error"


def test_upstream_retry_after_is_passed_on_with_its_429(gateway, upstream):
    upstream.script(error(429, headers={"Retry-After": "7"}))
    response = post_chat(gateway.port, {"messages": HI})
    assert response.status == 429
    assert response.headers["retry-after"] == "7"
