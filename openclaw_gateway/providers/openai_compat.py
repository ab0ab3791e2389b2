"""OpenAI Chat Completions over the process's pooled ``urllib3.PoolManager``, always streaming.

Speaks to OpenAI, vLLM, Ollama, llama.cpp, LM Studio, OpenRouter, Groq and anything else with the
same wire format. Upstream failures become ``UpstreamError`` subclasses with the right status.
"""

from __future__ import annotations

import json
from collections.abc import Generator, Iterator, Sequence
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

# Built once (``json.dumps`` with options builds an encoder per call).
_encode_body = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def _content(message: Message) -> Any:
    if not message.images:
        return message.text
    parts: list[dict[str, Any]] = [{"type": "text", "text": message.text}] if message.text else []
    for image in message.images:
        url = f"data:{image.mime};base64,{image.data}" if image.data else image.url
        parts.append({"type": "image_url", "image_url": {"url": url}})
    return parts


def to_openai_messages(system: str, messages: Sequence[Message]) -> list[dict[str, Any]]:
    """Translate the run's conversation into Chat Completions messages."""
    out: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    out += [_openai_message(m) for m in messages]
    return out


def _openai_message(m: Message) -> dict[str, Any]:
    if m.role == "tool":
        return {"role": "tool", "tool_call_id": m.tool_call_id or "", "content": m.text}
    if m.role == "assistant" and m.tool_calls:
        return {
            "role": "assistant",
            "content": m.text or None,
            "tool_calls": [c.to_openai() for c in m.tool_calls],
        }
    return {"role": m.role, "content": _content(m)}


# Characters of transcript JSON one provider keeps (one entry per conversation it serves).
HISTORY_JSON_LIMIT = 8 * 1024 * 1024
# How far back from a transcript's end to look for what an earlier turn encoded: a turn adds
# its user message and the reply, a few more entries with tool calls.
_LOOK_BACK = 16


class _HistoryJSON:
    """The JSON of the transcript each conversation last sent upstream, to be extended.

    A stateful turn sends the whole stored transcript again, and that transcript is the last
    turn's plus the entries the last turn appended. The JSON sent is kept with the messages it
    encodes; a turn whose transcript starts with those messages encodes only the entries after
    them: 2 messages instead of 200 for a 100-turn transcript (~150 us a turn, measured).
    Anything else (the first turn in this process, a reloaded transcript) is encoded in full,
    exactly as without it. Past ``limit`` characters everything kept is dropped.
    """

    __slots__ = ("_sent", "_size", "limit")

    def __init__(self, limit: int = HISTORY_JSON_LIMIT) -> None:
        # id of the last message -> (the messages, their JSON): the messages held, so the id
        # stays theirs; equal messages give the same JSON, so equality is the check.
        self._sent: dict[int, tuple[list[Message], str]] = {}
        self._size = 0
        self.limit = limit

    def encoded(self, history: list[Message]) -> str:
        """``history`` as the items of a JSON array (without the brackets)."""
        sent = self._sent
        start, text = 0, ""
        for end in range(len(history), max(0, len(history) - _LOOK_BACK), -1):
            entry = sent.get(id(history[end - 1]))
            if entry is not None and len(entry[0]) == end and entry[0] == history[:end]:
                del sent[id(history[end - 1])]
                self._size -= len(entry[1])
                start, text = end, entry[1]
                break
        if start < len(history):
            more = _encode_body([_openai_message(m) for m in history[start:]])[1:-1]
            text = f"{text},{more}" if text else more
        if history:
            if self._size + len(text) > self.limit:
                sent.clear()
                self._size = 0
            sent[id(history[-1])] = (list(history), text)
            self._size += len(text)
        return text


class OpenAICompatProvider:
    """A provider entry with ``api: "openai-completions"``."""

    def __init__(self, settings: ProviderSettings, pool: urllib3.PoolManager) -> None:
        self.settings = settings
        self._endpoint = Endpoint(pool, settings.base_url + "/chat/completions")
        self._headers = {
            "Content-Type": "application/json",
            "Accept": "text/event-stream",
            **settings.headers,
        }
        if settings.api_key:
            self._headers["Authorization"] = f"Bearer {settings.api_key}"
        self._timeout = urllib3.Timeout(
            connect=settings.connect_timeout_seconds, read=settings.timeout_seconds
        )
        self._history = _HistoryJSON()

    def _body(self, call: ProviderCall) -> bytes:
        if call.history:
            return self._body_with_history(call)
        body: dict[str, Any] = {
            "model": call.model,
            "messages": to_openai_messages(call.system, call.messages),
        }
        body.update(self._rest(call))
        return _encode_body(body).encode()

    def _body_with_history(self, call: ProviderCall) -> bytes:
        """The same body, its stored messages' JSON taken from ``_history``."""
        parts = [_encode_body({"role": "system", "content": call.system})] if call.system else []
        parts.append(self._history.encoded(call.messages[: call.history]))
        if len(call.messages) > call.history:
            parts.append(_encode_body(to_openai_messages("", call.messages[call.history :]))[1:-1])
        head = _encode_body({"model": call.model})
        rest = _encode_body(self._rest(call))
        return f'{head[:-1]},"messages":[{",".join(parts)}],{rest[1:]}'.encode()

    @staticmethod
    def _rest(call: ProviderCall) -> dict[str, Any]:
        """The body after ``model`` and ``messages``."""
        rest: dict[str, Any] = {"stream": True, "stream_options": {"include_usage": True}}
        rest.update(call.options)
        if call.tools:
            rest["tools"] = call.tools
            if call.tool_choice is not None:
                rest["tool_choice"] = call.tool_choice
        return rest

    def stream(self, call: ProviderCall, cancel: CancelToken) -> Iterator[ProviderEvent]:
        return stream_post(
            self._endpoint,
            body=self._body(call),
            headers=self._headers,
            timeout=self._timeout,
            cancel=cancel,
            secret=self.settings.api_key,
            read_sse=_read_sse,
            read_json=_read_json,
        )


def _read_json(raw: bytes) -> Iterator[ProviderEvent]:
    return _events_from_completion(_json(raw))


def _read_sse(events: Iterator[Event]) -> Generator[ProviderEvent, None, bool]:
    """The events of a streamed completion; True once it ended with ``[DONE]`` or a finish.

    A chunk of the wrong shape (a choice that is not an object, say) raises ``AttributeError``
    or ``TypeError``, which ``stream_post`` answers as the upstream's fault.
    """
    finished = False
    for event in events:
        if event.data == "[DONE]":
            return True
        # A list, not a generator per chunk, and nothing of the parsed chunk left in this frame
        # while it waits for the next event (a held stream waits most of its life).
        for item in _chunk_events(_event_json(event.data)):
            if item.__class__ is Finish:
                finished = True
            yield item
    return finished


def _chunk_events(chunk: dict[str, Any]) -> list[ProviderEvent]:
    """One chunk's provider events; most chunks carry one content delta and nothing else."""
    out: list[ProviderEvent] = []
    for choice in chunk.get("choices") or ():
        delta = choice.get("delta")
        if delta:
            text = delta.get("content")
            if text:
                out.append(TextDelta(text))
            calls = delta.get("tool_calls")
            if calls:
                out += _tool_call_deltas(calls)
        reason = choice.get("finish_reason")
        if reason:
            out.append(Finish(reason))
    usage = chunk.get("usage")
    if isinstance(usage, dict):
        out.append(_usage(usage))
    return out


def _tool_call_deltas(calls: list[dict[str, Any]]) -> Iterator[ToolCallDelta]:
    for call in calls:
        function = call.get("function") or {}
        yield ToolCallDelta(
            index=int(call.get("index", 0)),
            id=call.get("id"),
            name=function.get("name"),
            arguments=function.get("arguments") or "",
        )


def _json(data: str | bytes) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except ValueError:
        raise UpstreamError("The model provider sent invalid JSON.") from None
    return _checked(value)


_DECODER = json.JSONDecoder()


def _event_json(data: str) -> dict[str, Any]:
    """An event's data: one JSON document, as a rule with nothing around it. ``raw_decode`` is
    ``json.loads`` without its two whitespace scans and two Python frames; anything else (or a
    parse error, for its message) goes through ``_json``."""
    try:
        value, end = _DECODER.raw_decode(data)
    except ValueError:
        return _json(data)
    if end != len(data):
        return _json(data)
    return _checked(value)


def _checked(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise UpstreamError("The model provider sent invalid JSON.")
    if "error" in value and "choices" not in value:
        raise UpstreamError("The model provider reported an error mid-stream.")
    return value


def _usage(raw: dict[str, Any]) -> UsageReport:
    return UsageReport(
        Usage(
            prompt_tokens=int(raw.get("prompt_tokens") or 0),
            completion_tokens=int(raw.get("completion_tokens") or 0),
        )
    )


def _events_from_completion(body: dict[str, Any]) -> Iterator[ProviderEvent]:
    choices = body.get("choices") or [{}]
    message = choices[0].get("message") or {}
    if message.get("content"):
        yield TextDelta(message["content"])
    for index, call in enumerate(message.get("tool_calls") or ()):
        function = call.get("function") or {}
        yield ToolCallDelta(
            index, call.get("id"), function.get("name"), function.get("arguments") or ""
        )
    if isinstance(body.get("usage"), dict):
        yield _usage(body["usage"])
    yield Finish(choices[0].get("finish_reason") or "stop")
