"""Anthropic Messages (``api: "anthropic-messages"``) over the process's pooled connections.

Translates the run both ways: the system prompt goes to ``system``; images become base64 (or
url) ``image`` blocks; OpenAI function tools become ``tools`` with ``input_schema``; an
assistant's tool calls become ``tool_use`` blocks and ``tool`` messages ``tool_result`` blocks
in a user turn (consecutive turns of one role are merged, as the API wants them alternating).
The stream (``message_start``, ``content_block_start``/``_delta`` with ``text_delta`` and
``input_json_delta``, ``message_delta``, ``message_stop``) maps to the same provider events as
the OpenAI dialect; ``stop_reason`` maps end_turn/stop_sequence to ``stop``, max_tokens to
``length``, tool_use to ``tool_calls``. Usage: input tokens from ``message_start``, output
tokens from the last ``message_delta``. Errors and cancellation: ``transport.stream_post``.
"""

from __future__ import annotations

import json
from collections.abc import Generator, Iterator
from typing import Any

import urllib3
from sseclient import Event

from ..agent.errors import UpstreamError
from ..agent.types import (
    CancelToken,
    Finish,
    Message,
    ProviderCall,
    ProviderEvent,
    TextDelta,
    ToolCallDelta,
    Usage,
    UsageReport,
)
from ..config import ProviderSettings
from .transport import Endpoint, stream_post

ANTHROPIC_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096
STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


def _user_blocks(message: Message) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    for image in message.images:
        if image.data:
            source = {"type": "base64", "media_type": image.mime, "data": image.data}
        else:
            source = {"type": "url", "url": image.url}
        blocks.append({"type": "image", "source": source})
    if message.text:
        blocks.append({"type": "text", "text": message.text})
    return blocks


def _tool_input(arguments: str) -> Any:
    try:
        value = json.loads(arguments) if arguments.strip() else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _blocks(message: Message) -> tuple[str, list[dict[str, Any]]]:
    if message.role == "tool":
        block: dict[str, Any] = {
            "type": "tool_result",
            "tool_use_id": message.tool_call_id or "",
            "content": message.text,
        }
        if message.is_error:
            block["is_error"] = True
        return "user", [block]
    if message.role == "assistant":
        blocks: list[dict[str, Any]] = (
            [{"type": "text", "text": message.text}] if message.text else []
        )
        for call in message.tool_calls:
            blocks.append(
                {
                    "type": "tool_use",
                    "id": call.id,
                    "name": call.name,
                    "input": _tool_input(call.arguments),
                }
            )
        return "assistant", blocks
    return "user", _user_blocks(message)


def to_anthropic_messages(messages: list[Message]) -> list[dict[str, Any]]:
    """Translate the conversation into Messages API turns (alternating roles, no empty ones)."""
    out: list[dict[str, Any]] = []
    for message in messages:
        role, blocks = _blocks(message)
        if not blocks:
            continue
        if out and out[-1]["role"] == role:
            # tool_result blocks must open a user turn; anything else follows them.
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": role, "content": blocks})
    return out


def _tools(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for tool in tools:
        function = tool.get("function") or {}
        entry: dict[str, Any] = {
            "name": function.get("name", ""),
            "input_schema": function.get("parameters") or {"type": "object", "properties": {}},
        }
        if function.get("description"):
            entry["description"] = function["description"]
        out.append(entry)
    return out


def _tool_choice(choice: Any) -> dict[str, Any] | None:
    if choice == "auto":
        return {"type": "auto"}
    if choice == "required":
        return {"type": "any"}
    if choice == "none":
        return {"type": "none"}
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        if name:
            return {"type": "tool", "name": name}
    return None


def request_body(call: ProviderCall) -> dict[str, Any]:
    """The Messages API request for a provider call (options mapped, unsupported ones dropped)."""
    options = call.options
    body: dict[str, Any] = {
        "model": call.model,
        "max_tokens": options.get("max_completion_tokens")
        or options.get("max_tokens")
        or DEFAULT_MAX_TOKENS,
        "messages": to_anthropic_messages(call.messages),
        "stream": True,
    }
    if call.system:
        body["system"] = call.system
    if "temperature" in options:
        # OpenAI's range is 0..2, Anthropic's 0..1: clamp rather than fail the run.
        body["temperature"] = min(float(options["temperature"]), 1.0)
    if "top_p" in options:
        body["top_p"] = options["top_p"]
    stop = options.get("stop")
    if stop:
        body["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    # seed, response_format and the penalties have no Messages API equivalent.
    if call.tools:
        body["tools"] = _tools(call.tools)
        choice = _tool_choice(call.tool_choice)
        if choice is not None:
            body["tool_choice"] = choice
    return body


class AnthropicProvider:
    """A provider entry with ``api: "anthropic-messages"``."""

    def __init__(self, settings: ProviderSettings, pool: urllib3.PoolManager) -> None:
        self.settings = settings
        base = settings.base_url or "https://api.anthropic.com"
        self._endpoint = Endpoint(
            pool, base + ("/messages" if base.endswith("/v1") else "/v1/messages")
        )
        self._headers = {
            "Content-Type": "application/json",
            "Accept": "text/event-stream",
            "anthropic-version": ANTHROPIC_VERSION,
            **settings.headers,
        }
        if settings.api_key:
            self._headers["x-api-key"] = settings.api_key
        self._timeout = urllib3.Timeout(
            connect=settings.connect_timeout_seconds, read=settings.timeout_seconds
        )

    def stream(self, call: ProviderCall, cancel: CancelToken) -> Iterator[ProviderEvent]:
        body = json.dumps(request_body(call), separators=(",", ":"), ensure_ascii=False)
        return stream_post(
            self._endpoint,
            body=body.encode(),
            headers=self._headers,
            timeout=self._timeout,
            cancel=cancel,
            secret=self.settings.api_key,
            read_sse=_read_sse,
            read_json=_read_json,
        )


def _read_json(raw: bytes) -> Iterator[ProviderEvent]:
    return _events_from_message(_json(raw))


def _json(data: str | bytes) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except ValueError:
        raise UpstreamError("The model provider sent invalid JSON.") from None
    if not isinstance(value, dict):
        raise UpstreamError("The model provider sent invalid JSON.")
    if value.get("type") == "error":
        raise UpstreamError("The model provider reported an error mid-stream.")
    return value


def _int(raw: Any, key: str) -> int:
    value = raw.get(key) if isinstance(raw, dict) else None
    return value if isinstance(value, int) else 0


def _input_tokens(usage: Any) -> int:
    # Cached prompt tokens are prompt tokens too (Anthropic counts them apart).
    return sum(
        _int(usage, k)
        for k in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
    )


def _read_sse(events: Iterator[Event]) -> Generator[ProviderEvent, None, bool]:
    tool_index: dict[int, int] = {}  # content block index -> tool call index
    prompt = completion = 0
    stop_reason = "stop"
    for event in events:
        if not event.data:
            continue
        data = _json(event.data)
        kind = data.get("type") or event.event
        if kind == "message_start":
            usage = (data.get("message") or {}).get("usage")
            prompt = _input_tokens(usage)
            completion = _int(usage, "output_tokens")
        elif kind == "content_block_start":
            block = data.get("content_block") or {}
            if block.get("type") == "tool_use":
                index = tool_index[int(data.get("index", 0))] = len(tool_index)
                yield ToolCallDelta(index, block.get("id"), block.get("name"), "")
            elif block.get("type") == "text" and block.get("text"):
                yield TextDelta(block["text"])
        elif kind == "content_block_delta":
            delta = data.get("delta") or {}
            if delta.get("type") == "text_delta" and delta.get("text"):
                yield TextDelta(delta["text"])
            elif delta.get("type") == "input_json_delta":
                call_index = tool_index.get(int(data.get("index", 0)))
                if call_index is not None and delta.get("partial_json"):
                    yield ToolCallDelta(call_index, None, None, delta["partial_json"])
        elif kind == "message_delta":
            reason = (data.get("delta") or {}).get("stop_reason")
            if reason:
                stop_reason = STOP_REASONS.get(reason, "stop")
            usage = data.get("usage")
            if _int(usage, "output_tokens"):
                completion = _int(usage, "output_tokens")
            if _input_tokens(usage):
                prompt = _input_tokens(usage)
        elif kind == "message_stop":
            yield UsageReport(Usage(prompt_tokens=prompt, completion_tokens=completion))
            yield Finish(stop_reason)
            return True
    return False


def _events_from_message(body: dict[str, Any]) -> Iterator[ProviderEvent]:
    index = 0
    for block in body.get("content") or ():
        if block.get("type") == "text" and block.get("text"):
            yield TextDelta(block["text"])
        elif block.get("type") == "tool_use":
            arguments = json.dumps(block.get("input") or {}, separators=(",", ":"))
            yield ToolCallDelta(index, block.get("id"), block.get("name"), arguments)
            index += 1
    usage = body.get("usage")
    yield UsageReport(
        Usage(prompt_tokens=_input_tokens(usage), completion_tokens=_int(usage, "output_tokens"))
    )
    yield Finish(STOP_REASONS.get(body.get("stop_reason") or "", "stop"))
