"""The Chat Completions request: its fields, their validation, and the message rules (SPEC 3)."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any

from ..agent.errors import InvalidRequest, MissingUserMessage, PayloadTooLarge
from ..agent.types import Image, Message, ToolCall
from ..config import ChatCompletionsSettings, json_type
from ..wire import decode_json

IMAGE_MIMES = ("image/jpeg", "image/png", "image/gif", "image/webp")
IMAGE_ONLY_TEXT = "User sent image(s) with no text."
INVALID_IMAGE = "Invalid image_url content in `messages`."
_READ_SIZE = 65536
# A surrogate escape, or a surrogate encoded as UTF-8 bytes (``json`` decodes bytes with
# surrogatepass): only a body with one of these needs the full lone-surrogate check.


@dataclass(slots=True)
class ChatRequest:
    model: str | None
    messages: list[Message]
    extra_system_prompt: str = ""
    stream: bool = False
    include_usage: bool = False
    user: str | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: Any = None
    options: dict[str, Any] = field(default_factory=dict)


def _expected(path: str, wanted: str, value: Any) -> InvalidRequest:
    return InvalidRequest(f"{path}: expected {wanted}, received {json_type(value)}", param=path)


# ---------------------------------------------------------------------------------------------
# Body


_ENVIRON_KEYS: dict[str, str] = {}


def header(environ: dict[str, Any], name: str) -> str | None:
    """A request header read straight from the WSGI environ, as Werkzeug's ``EnvironHeaders``
    would return it, without its raise-and-catch of a KeyError for every absent header."""
    key = _ENVIRON_KEYS.get(name)
    if key is None:
        key = name.upper().replace("-", "_")
        if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            key = "HTTP_" + key
        if len(_ENVIRON_KEYS) < 256:  # the names are the code's and the config's: few
            _ENVIRON_KEYS[name] = key
    return environ.get(key)


def read_body(environ: dict[str, Any], limit: int) -> bytes:
    """Read the request body, refusing more than ``limit`` bytes (from Content-Length, or while
    reading a chunked body)."""
    length = environ.get("CONTENT_LENGTH") or ""
    stream = environ["wsgi.input"]
    try:
        if length:
            if not length.isdigit():
                raise InvalidRequest("Invalid Content-Length header.")
            size = int(length)
            if size > limit:
                raise PayloadTooLarge()
            # The server's input ends at Content-Length: one read (short if the client left).
            return stream.read(size)  # type: ignore[no-any-return]
        chunks: list[bytes] = []
        size = 0
        while True:
            chunk = stream.read(_READ_SIZE)
            if not chunk:
                break
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge()
            chunks.append(chunk)
    except (OSError, ValueError):
        raise InvalidRequest("The request body could not be read.") from None
    return b"".join(chunks)


def parse_json(body: bytes) -> dict[str, Any]:
    """Parse whatever the Content-Type says; an empty body is ``{}``."""
    if not body.strip():
        return {}
    try:
        value = decode_json(body)
    except ValueError as exc:
        raise InvalidRequest(f"Invalid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise InvalidRequest(f"Invalid request body: expected object, received {json_type(value)}")
    return value


# ---------------------------------------------------------------------------------------------
# Fields


def _number(body: dict[str, Any], name: str, lo: float, hi: float, span: str) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _expected(name, "number", value)
    if not lo <= value <= hi:
        raise InvalidRequest(f"`{name}` must be between {span}.", param=name)
    return value


def _integer(body: dict[str, Any], name: str, lo: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise _expected(name, "integer", value)
    if value < lo:
        raise InvalidRequest(f"`{name}` must be at least {lo}.", param=name)
    return value


def _options(body: dict[str, Any]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    max_completion = _integer(body, "max_completion_tokens", 1)
    max_tokens = _integer(body, "max_tokens", 1)
    if max_completion is not None:
        options["max_completion_tokens"] = max_completion
    elif max_tokens is not None:
        options["max_tokens"] = max_tokens
    # The range as OpenClaw words it in the error (penalties with one decimal).
    for name, lo, hi, span in (
        ("temperature", 0, 2, "0 and 2"),
        ("top_p", 0, 1, "0 and 1"),
        ("presence_penalty", -2, 2, "-2.0 and 2.0"),
        ("frequency_penalty", -2, 2, "-2.0 and 2.0"),
    ):
        value = _number(body, name, lo, hi, span)
        if value is not None:
            options[name] = value
    seed = body.get("seed")
    if seed is not None:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise _expected("seed", "integer", seed)
        options["seed"] = seed
    stop = body.get("stop")
    if stop is not None:
        if isinstance(stop, str):
            options["stop"] = stop
        elif isinstance(stop, list) and len(stop) <= 4 and all(isinstance(s, str) for s in stop):
            options["stop"] = stop
        else:
            raise _expected("stop", "string or array of up to 4 strings", stop)
    response_format = body.get("response_format")
    if response_format is not None:
        if not isinstance(response_format, dict) or response_format.get("type") not in (
            "text",
            "json_object",
            "json_schema",
        ):
            raise _expected(
                "response_format", "{type: text | json_object | json_schema}", response_format
            )
        options["response_format"] = response_format
    return options


def _tools(body: dict[str, Any]) -> tuple[list[dict[str, Any]] | None, Any]:
    tools = body.get("tools")
    choice = body.get("tool_choice")
    names: set[str] = set()
    if tools is not None:
        if not isinstance(tools, list):
            raise _expected("tools", "array", tools)
        for i, tool in enumerate(tools):
            function = tool.get("function") if isinstance(tool, dict) else None
            name = function.get("name") if isinstance(function, dict) else None
            if (
                not isinstance(tool, dict)
                or tool.get("type", "function") != "function"
                or not isinstance(name, str)
                or not name
            ):
                raise InvalidRequest(
                    f'Invalid tools/tool_choice: tools[{i}] must be {{type: "function", function: {{name, ...}}}}',
                    param="tools",
                )
            names.add(name)
        if not tools:
            tools = None
    if choice is None:
        return tools, None
    if isinstance(choice, str):
        if choice not in ("none", "auto", "required"):
            raise InvalidRequest(
                f"Invalid tools/tool_choice: unknown tool_choice '{choice}'", param="tool_choice"
            )
        if choice == "required" and not names:
            raise InvalidRequest(
                "Invalid tools/tool_choice: tool_choice 'required' needs tools", param="tool_choice"
            )
        return tools, choice
    function = choice.get("function") if isinstance(choice, dict) else None
    name = function.get("name") if isinstance(function, dict) else None
    if not isinstance(name, str):
        raise InvalidRequest(
            'Invalid tools/tool_choice: tool_choice must be none, auto, required or {type: "function", function: {name}}',
            param="tool_choice",
        )
    if name not in names:
        raise InvalidRequest(
            f"Invalid tools/tool_choice: unknown function '{name}'", param="tool_choice"
        )
    return tools, choice


# ---------------------------------------------------------------------------------------------
# Messages


class _Images:
    """Counts image parts and decoded bytes across the request, enforcing the limits."""

    def __init__(self, settings: ChatCompletionsSettings) -> None:
        self.settings = settings
        self.parts = 0
        self.bytes = 0

    def parse(self, part: dict[str, Any]) -> Image:
        raw = part.get("image_url")
        url = raw.get("url") if isinstance(raw, dict) else raw
        if not isinstance(url, str):
            raise InvalidRequest(INVALID_IMAGE, param="messages")
        self.parts += 1
        if self.parts > self.settings.max_image_parts:
            raise InvalidRequest(INVALID_IMAGE, param="messages")
        if url.startswith("data:"):
            header, _, data = url[5:].partition(",")
            mime, _, encoding = header.partition(";")
            if encoding != "base64" or mime.lower() not in IMAGE_MIMES:
                raise InvalidRequest(INVALID_IMAGE, param="messages")
            try:
                size = len(base64.b64decode(data, validate=True))
            except (binascii.Error, ValueError):
                raise InvalidRequest(INVALID_IMAGE, param="messages") from None
            self.bytes += size
            if size == 0 or self.bytes > self.settings.max_image_bytes:
                raise InvalidRequest(INVALID_IMAGE, param="messages")
            return Image(mime=mime.lower(), data=data)
        if self.settings.images_allow_url and url.startswith(("https://", "http://")):
            return Image(url=url)
        raise InvalidRequest(INVALID_IMAGE, param="messages")


def _content(value: Any, path: str, images: _Images) -> tuple[str, tuple[Image, ...]]:
    if value is None:
        return "", ()
    if isinstance(value, str):
        return value, ()
    if not isinstance(value, list):
        raise _expected(path, "string or array", value)
    texts: list[str] = []
    found: list[Image] = []
    for i, part in enumerate(value):
        if not isinstance(part, dict):
            raise _expected(f"{path}.{i}", "object", part)
        kind = part.get("type")
        if kind in ("text", "input_text"):
            text = part.get("text")
            if not isinstance(text, str):
                raise _expected(f"{path}.{i}.text", "string", text)
            texts.append(text)
        elif kind == "image_url":
            found.append(images.parse(part))
    return "\n".join(texts), tuple(found)


def _tool_calls(value: Any, path: str) -> tuple[ToolCall, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise _expected(path, "array", value)
    calls = []
    for i, call in enumerate(value):
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise _expected(f"{path}.{i}", "{id, type, function: {name, arguments}}", call)
        arguments = function.get("arguments")
        if not isinstance(arguments, str):
            arguments = json.dumps(arguments) if arguments is not None else ""
        calls.append(ToolCall(str(call.get("id") or f"call_{i}"), function["name"], arguments))
    return tuple(calls)


def parse_messages(value: Any, settings: ChatCompletionsSettings) -> tuple[list[Message], str]:
    """Return ``(conversation up to the current turn, extra system prompt)``."""
    if value is None:
        raise MissingUserMessage(param="messages")
    if not isinstance(value, list):
        raise _expected("messages", "array", value)
    images = _Images(settings)
    system: list[str] = []
    messages: list[Message] = []
    for i, raw in enumerate(value):
        path = f"messages.{i}"
        if not isinstance(raw, dict):
            raise _expected(path, "object", raw)
        role = raw.get("role")
        if not isinstance(role, str):
            raise _expected(f"{path}.role", "string", role)
        text, found = _content(raw.get("content"), f"{path}.content", images)
        if role in ("system", "developer"):
            if text:
                system.append(text)
        elif role == "user":
            messages.append(Message("user", text, images=found))
        elif role == "assistant":
            calls = _tool_calls(raw.get("tool_calls"), f"{path}.tool_calls")
            messages.append(Message("assistant", text, tool_calls=calls))
        elif role in ("tool", "function"):
            call_id = raw.get("tool_call_id") or raw.get("name") or ""
            if not isinstance(call_id, str):
                raise _expected(f"{path}.tool_call_id", "string", call_id)
            messages.append(Message("tool", text, tool_call_id=call_id))
    # The current turn is the last user or tool message; anything after it is dropped.
    current = next(
        (i for i in range(len(messages) - 1, -1, -1) if messages[i].role in ("user", "tool")), None
    )
    if current is None:
        raise MissingUserMessage(param="messages")
    messages = messages[: current + 1]
    turn = messages[current]
    if turn.role == "user":
        if not turn.text.strip() and not turn.images:
            raise MissingUserMessage(param="messages")
        if not turn.text.strip():
            messages[current] = Message("user", IMAGE_ONLY_TEXT, images=turn.images)
    return messages, "\n\n".join(system)


def parse_chat_request(body: dict[str, Any], settings: ChatCompletionsSettings) -> ChatRequest:
    """Validate the fields this gateway reads; unknown fields are ignored."""
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise _expected("model", "string", model)
    stream = body.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise _expected("stream", "boolean", stream)
    stream_options = body.get("stream_options")
    include_usage = False
    if stream_options is not None:
        if not isinstance(stream_options, dict):
            raise _expected("stream_options", "object", stream_options)
        include_usage = stream_options.get("include_usage", False)
        if not isinstance(include_usage, bool):
            raise _expected("stream_options.include_usage", "boolean", include_usage)
    user = body.get("user")
    if user is not None and not isinstance(user, str):
        raise _expected("user", "string", user)
    n = body.get("n")
    if n is not None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise _expected("n", "positive integer", n)
        if n > 1:
            raise InvalidRequest("`n` must be 1: this gateway returns one choice.", param="n")
    options = _options(body)
    tools, tool_choice = _tools(body)
    messages, system = parse_messages(body.get("messages"), settings)
    return ChatRequest(
        model=model,
        messages=messages,
        extra_system_prompt=system,
        stream=stream,
        include_usage=include_usage,
        user=user,
        tools=tools,
        tool_choice=tool_choice,
        options=options,
    )
