"""SPEC 3: field validation with exact messages, the message rules, and what reaches the upstream."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import GatewayProcess, base_config
from tests.rawhttp import post_chat

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n fake png bytes").decode()
DATA_URI = f"data:image/png;base64,{PNG}"
IMAGE_BYTES = len(base64.b64decode(PNG))
HI = [{"role": "user", "content": "hi"}]
MISSING = "Missing user message in `messages`."
INVALID_IMAGE = "Invalid image_url content in `messages`."


@pytest.fixture(scope="module")
def url_images_gateway(upstream_server, tmp_path_factory) -> Iterator[GatewayProcess]:
    config = base_config(upstream_server)
    config["gateway"]["http"]["endpoints"]["chatCompletions"]["images"] = {
        "allowUrl": True,
        "maxBytes": IMAGE_BYTES * 2,
    }
    process = GatewayProcess(config, tmp_path_factory.mktemp("url-images")).start()
    yield process
    process.stop()


def _error(gateway, payload: Any, status: int = 400) -> dict[str, Any]:
    response = post_chat(gateway.port, payload)
    assert response.status == status, response.body
    return response.json()["error"]


def _sent(gateway, upstream, payload: dict[str, Any]) -> dict[str, Any]:
    """Post ``payload`` (non-streaming), expect 200, return the body the upstream received."""
    before = len(upstream.requests)
    response = post_chat(gateway.port, payload)
    assert response.status == 200, response.body
    assert len(upstream.requests) == before + 1
    return upstream.requests[-1].body


def _image(url: str = DATA_URI, as_object: bool = True) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": url} if as_object else url}


# ---- field types


@pytest.mark.parametrize(
    ("payload", "message", "param"),
    [
        ({"messages": "hi"}, "messages: expected array, received string", "messages"),
        ({"messages": {"role": "user"}}, "messages: expected array, received object", "messages"),
        ({"messages": HI, "stream": "yes"}, "stream: expected boolean, received string", "stream"),
        ({"messages": HI, "stream": 1}, "stream: expected boolean, received number", "stream"),
        ({"messages": HI, "model": 5}, "model: expected string, received number", "model"),
        ({"messages": HI, "user": ["u"]}, "user: expected string, received array", "user"),
        (
            {"messages": HI, "stream_options": {"include_usage": "true"}},
            "stream_options.include_usage: expected boolean, received string",
            "stream_options.include_usage",
        ),
        ({"messages": [1]}, "messages.0: expected object, received number", "messages.0"),
        (
            {"messages": [{"role": "user", "content": 7}]},
            "messages.0.content: expected string or array, received number",
            "messages.0.content",
        ),
        (
            {"messages": [{"content": "hi"}]},
            "messages.0.role: expected string, received null",
            "messages.0.role",
        ),
        (
            {"messages": HI, "temperature": "hot"},
            "temperature: expected number, received string",
            "temperature",
        ),
        (
            {"messages": HI, "max_tokens": "10"},
            "max_tokens: expected integer, received string",
            "max_tokens",
        ),
        ({"messages": HI, "seed": 1.5}, "seed: expected integer, received number", "seed"),
    ],
)
def test_a_field_of_the_wrong_type_is_400_naming_it(gateway, payload, message, param):
    error = _error(gateway, payload)
    assert error == {
        "message": message,
        "type": "invalid_request_error",
        "param": param,
        "code": None,
    }


@pytest.mark.parametrize("value", [-0.1, 2.01, 5])
def test_temperature_out_of_range_is_400(gateway, value):
    error = _error(gateway, {"messages": HI, "temperature": value})
    assert error["message"] == "`temperature` must be between 0 and 2."
    assert error["param"] == "temperature"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("top_p", 1.5, "`top_p` must be between 0 and 1."),
        ("presence_penalty", -3, "`presence_penalty` must be between -2.0 and 2.0."),
        ("frequency_penalty", 2.5, "`frequency_penalty` must be between -2.0 and 2.0."),
    ],
)
def test_sampling_params_out_of_range_are_400(gateway, field, value, message):
    assert _error(gateway, {"messages": HI, field: value})["message"] == message


def test_stop_with_more_than_four_strings_is_400(gateway):
    error = _error(gateway, {"messages": HI, "stop": ["a", "b", "c", "d", "e"]})
    assert error["param"] == "stop"


@pytest.mark.parametrize("n", [2, 10])
def test_n_above_one_is_400_naming_n(gateway, n):
    error = _error(gateway, {"messages": HI, "n": n})
    assert error["param"] == "n"
    assert error["type"] == "invalid_request_error"


def test_n_of_one_is_accepted(gateway, upstream):
    assert post_chat(gateway.port, {"messages": HI, "n": 1}).status == 200


def test_n_above_one_is_bad_request_in_the_sdk(client):
    import openai

    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="openclaw", messages=HI, n=2)


# ---- missing user message


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"messages": []},
        {"messages": None},
        {"messages": [{"role": "system", "content": "be nice"}]},
        {"messages": [{"role": "developer", "content": "be nice"}]},
        {"messages": [{"role": "user", "content": ""}]},
        {"messages": [{"role": "user", "content": "   \n "}]},
        {"messages": [{"role": "user", "content": []}]},
        {"messages": [{"role": "user", "content": [{"type": "text", "text": ""}]}]},
        {"messages": [{"role": "user"}]},
        {"messages": [{"role": "assistant", "content": "hello"}]},
        {"messages": [{"role": "narrator", "content": "hello"}]},
    ],
)
def test_no_user_text_and_no_image_is_missing_user_message(gateway, payload):
    error = _error(gateway, payload)
    assert error["message"] == MISSING
    assert error["type"] == "invalid_request_error"


# ---- images


@pytest.mark.parametrize(
    "part",
    [
        _image("https://example.com/cat.png"),
        _image("http://example.com/cat.png"),
        _image("data:image/svg+xml;base64," + PNG),
        _image("data:text/plain;base64," + PNG),
        _image("data:image/png," + PNG),
        _image("data:image/png;base64,not*base64!"),
        _image("data:image/png;base64,"),
        _image("ftp://example.com/cat.png"),
        {"type": "image_url", "image_url": {"url": 42}},
        {"type": "image_url"},
    ],
)
def test_bad_image_parts_are_400_invalid_image(gateway, part):
    payload = {"messages": [{"role": "user", "content": [{"type": "text", "text": "look"}, part]}]}
    error = _error(gateway, payload)
    assert error["message"] == INVALID_IMAGE


def test_more_than_eight_image_parts_are_refused(gateway):
    content = [{"type": "text", "text": "look"}] + [_image() for _ in range(9)]
    assert _error(gateway, {"messages": [{"role": "user", "content": content}]})["message"] == (
        INVALID_IMAGE
    )


def test_images_are_counted_across_messages(gateway):
    messages = [{"role": "user", "content": [_image()] * 5}, {"role": "assistant", "content": "ok"}]
    messages.append({"role": "user", "content": [{"type": "text", "text": "x"}] + [_image()] * 4})
    assert _error(gateway, {"messages": messages})["message"] == INVALID_IMAGE


@pytest.mark.parametrize("mime", ["image/jpeg", "image/png", "image/gif", "image/webp"])
def test_eight_data_uri_images_of_each_allowed_mime_are_accepted(gateway, upstream, mime):
    content = [{"type": "text", "text": "look"}] + [
        _image(f"data:{mime};base64,{PNG}") for _ in range(8)
    ]
    sent = _sent(gateway, upstream, {"messages": [{"role": "user", "content": content}]})
    parts = sent["messages"][-1]["content"]
    assert parts[0] == {"type": "text", "text": "look"}
    assert [p["image_url"]["url"] for p in parts[1:]] == [f"data:{mime};base64,{PNG}"] * 8


def test_an_image_url_given_as_a_string_is_accepted(gateway, upstream):
    content = [{"type": "text", "text": "look"}, _image(as_object=False)]
    sent = _sent(gateway, upstream, {"messages": [{"role": "user", "content": content}]})
    assert sent["messages"][-1]["content"][1] == {
        "type": "image_url",
        "image_url": {"url": DATA_URI},
    }


def test_an_image_only_turn_is_sent_with_the_placeholder_text(gateway, upstream):
    sent = _sent(gateway, upstream, {"messages": [{"role": "user", "content": [_image()]}]})
    assert sent["messages"][-1] == {
        "role": "user",
        "content": [
            {"type": "text", "text": "User sent image(s) with no text."},
            {"type": "image_url", "image_url": {"url": DATA_URI}},
        ],
    }


def test_remote_image_urls_are_accepted_when_allowed(url_images_gateway, upstream):
    url = "https://example.com/cat.png"
    content = [{"type": "text", "text": "look"}, _image(url)]
    sent = _sent(url_images_gateway, upstream, {"messages": [{"role": "user", "content": content}]})
    assert sent["messages"][-1]["content"][1] == {"type": "image_url", "image_url": {"url": url}}


def test_images_within_max_bytes_are_accepted(url_images_gateway, upstream):
    content = [{"type": "text", "text": "two"}, _image(), _image()]
    _sent(url_images_gateway, upstream, {"messages": [{"role": "user", "content": content}]})


def test_images_over_max_bytes_in_all_are_refused(url_images_gateway):
    content = [{"type": "text", "text": "three"}, _image(), _image(), _image()]
    error = _error(url_images_gateway, {"messages": [{"role": "user", "content": content}]})
    assert error["message"] == INVALID_IMAGE


def test_allow_url_still_refuses_other_schemes(url_images_gateway):
    content = [{"type": "text", "text": "look"}, _image("file:///etc/passwd")]
    error = _error(url_images_gateway, {"messages": [{"role": "user", "content": content}]})
    assert error["message"] == INVALID_IMAGE


# ---- message rules, seen from the upstream


def test_text_parts_are_joined_with_newlines(gateway, upstream):
    content = [
        {"type": "text", "text": "one"},
        {"type": "input_text", "text": "two"},
        {"type": "something_else", "text": "ignored"},
        {"type": "text", "text": "three"},
    ]
    sent = _sent(gateway, upstream, {"messages": [{"role": "user", "content": content}]})
    assert sent["messages"][-1] == {"role": "user", "content": "one\ntwo\nthree"}


def test_system_and_developer_messages_become_one_system_message(gateway, upstream):
    messages = [
        {"role": "system", "content": "Rule one."},
        {"role": "user", "content": "hi"},
        {"role": "developer", "content": [{"type": "text", "text": "Rule two."}]},
    ]
    sent = _sent(gateway, upstream, {"messages": messages})
    assert sent["messages"] == [
        {"role": "system", "content": "Rule one.\n\nRule two."},
        {"role": "user", "content": "hi"},
    ]


def test_the_agent_system_prompt_comes_before_the_request_system_prompt(gateway, upstream):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]
    sent = _sent(gateway, upstream, {"model": "openclaw/writer", "messages": messages})
    assert sent["messages"][0] == {
        "role": "system",
        "content": "You are a careful editor.\n\nBe brief.",
    }


def test_client_history_of_a_stateless_request_goes_upstream_as_messages(gateway, upstream):
    messages = [
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "answer one"},
        {"role": "user", "content": "second"},
    ]
    sent = _sent(gateway, upstream, {"messages": messages})
    assert sent["messages"] == messages


def test_messages_after_the_last_user_turn_are_not_sent(gateway, upstream):
    messages = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "dangling"}]
    sent = _sent(gateway, upstream, {"messages": messages})
    assert sent["messages"] == [{"role": "user", "content": "q"}]


def test_unknown_roles_are_ignored(gateway, upstream):
    messages = [{"role": "narrator", "content": "zzz"}, {"role": "user", "content": "hi"}]
    assert _sent(gateway, upstream, {"messages": messages})["messages"] == HI


def test_function_role_is_read_as_tool(gateway, upstream):
    messages = [
        {"role": "user", "content": "weather?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_9",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": "{}"},
                }
            ],
        },
        {"role": "function", "name": "call_9", "content": "sunny"},
    ]
    sent = _sent(gateway, upstream, {"messages": messages})
    assert sent["messages"][-1] == {"role": "tool", "tool_call_id": "call_9", "content": "sunny"}
    assert sent["messages"][-2]["tool_calls"][0]["function"]["name"] == "get_weather"


def test_a_tool_message_is_the_current_turn(gateway, upstream):
    messages = [
        {"role": "user", "content": "weather?"},
        {
            "role": "assistant",
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "w", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "rain"},
    ]
    sent = _sent(gateway, upstream, {"messages": messages})
    assert sent["messages"][-1] == {"role": "tool", "tool_call_id": "c1", "content": "rain"}


# ---- options forwarded


def test_max_tokens_is_forwarded(gateway, upstream):
    sent = _sent(gateway, upstream, {"messages": HI, "max_tokens": 33})
    assert sent["max_tokens"] == 33


def test_max_completion_tokens_wins_over_max_tokens(gateway, upstream):
    sent = _sent(gateway, upstream, {"messages": HI, "max_tokens": 33, "max_completion_tokens": 44})
    assert sent["max_completion_tokens"] == 44
    assert "max_tokens" not in sent


def test_sampling_params_are_forwarded(gateway, upstream):
    options = {
        "temperature": 0.7,
        "top_p": 0.9,
        "presence_penalty": -1.5,
        "frequency_penalty": 1.25,
        "seed": 1234,
        "stop": ["END", "STOP"],
        "response_format": {"type": "json_object"},
    }
    sent = _sent(gateway, upstream, {"messages": HI, **options})
    assert {k: sent[k] for k in options} == options


def test_stop_as_a_string_is_forwarded(gateway, upstream):
    assert _sent(gateway, upstream, {"messages": HI, "stop": "END"})["stop"] == "END"


def test_the_upstream_is_always_asked_to_stream_with_usage(gateway, upstream):
    sent = _sent(gateway, upstream, {"messages": HI})
    assert sent["stream"] is True
    assert sent["stream_options"] == {"include_usage": True}
    assert sent["model"] == "echo-model"


def test_unknown_fields_are_ignored(gateway, upstream):
    payload = {
        "messages": HI,
        "logprobs": True,
        "metadata": {"a": 1},
        "frobnicate": [1, 2, 3],
        "service_tier": "auto",
        "parallel_tool_calls": False,
    }
    sent = _sent(gateway, upstream, payload)
    assert not {"logprobs", "metadata", "frobnicate", "service_tier"} & set(sent)


def test_tools_are_forwarded(gateway, upstream):
    tools = [
        {
            "type": "function",
            "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}},
        }
    ]
    sent = _sent(gateway, upstream, {"messages": HI, "tools": tools, "tool_choice": "auto"})
    assert sent["tools"] == tools
    assert sent["tool_choice"] == "auto"


# ---- nothing malformed gets a 500


@pytest.mark.parametrize(
    "body",
    [
        b"null",
        b"42",
        b'"text"',
        b"[" * 5000 + b"]" * 5000,
        b'{"messages": [{"role": "user", "content": [{"type": "text"}]}]}',
        b'{"messages": [{"role": "user", "content": [null]}]}',
        b'{"messages": [{"role": 1, "content": "x"}]}',
        b'{"messages": [{"role": "tool", "content": "x", "tool_call_id": 5}]}',
        b'{"messages": [{"role": "assistant", "tool_calls": "x"}, {"role": "user", "content": "q"}]}',
        b'{"messages": [{"role": "user", "content": "x"}], "tools": "x"}',
        b'{"messages": [{"role": "user", "content": "x"}], "tools": [1]}',
        b'{"messages": [{"role": "user", "content": "x"}], "tool_choice": "required"}',
        b'{"messages": [{"role": "user", "content": "x"}], "tool_choice": {"function": {}}}',
        b'{"messages": [{"role": "user", "content": "x"}], "response_format": "json"}',
        b'{"messages": [{"role": "user", "content": "x"}], "n": "2"}',
        b'{"messages": [{"role": "user", "content": "x"}], "n": 0}',
        b'{"messages": [{"role": "user", "content": "x"}], "stream_options": 3}',
        b'{"messages": [{"role": "user", "content": "x"}], "max_tokens": 0}',
        b'{"messages": [{"role": "user", "content": "x"}], "temperature": NaN}',
        b'{"messages": [{"role": "user", "content": "x"}], "temperature": Infinity}',
        b'{"messages": [{"role": "user", "content": "x"}], "max_tokens": 1e400}',
        b'{"messages": [{"role": "user", "content": "x"}], "metadata": {"score": NaN}}',
        b'{"messages": [{"role": "user", "content": "\\ud800"}], "user": "\\udfff"}',
        b'{"messages": [{"role": "user", "content": "lone \\ud800 surrogate"}]}',
        b'{"messages": [{"role": "user", "content": "x\\uDFFF"}], "stream": true}',
        b'{"messages": [{"role": "system", "content": "\\ud83d"}, {"role": "user", "content": "x"}]}',
        b"\xff\xfe\x00garbage",
    ],
)
def test_malformed_requests_get_a_4xx_never_a_500(gateway, upstream, body):
    response = post_chat(gateway.port, body)
    assert 400 <= response.status < 500, (response.status, response.body)
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["message"]


def test_a_json_body_with_many_messages_is_fine(gateway, upstream):
    messages = []
    for i in range(200):
        messages += [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": "a"}]
    messages.append({"role": "user", "content": "last"})
    body = json.dumps({"messages": messages}).encode()
    assert post_chat(gateway.port, body).status == 200


def test_a_valid_surrogate_pair_escape_is_accepted(gateway, upstream):
    body = b'{"messages": [{"role": "user", "content": "smile \\ud83d\\ude00"}]}'
    response = post_chat(gateway.port, body)
    assert response.status == 200
    assert upstream.requests[-1].body["messages"][-1]["content"] == "smile \U0001f600"
