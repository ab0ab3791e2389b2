"""``run_agent``: the one synchronous codepath every surface (HTTP, SSE, WebSocket, CLI) calls."""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from contextlib import closing, nullcontext
from typing import Any

from .errors import GatewayError, RunCancelled, UpstreamError
from .prompt import build_conversation, system_prompt
from .types import (
    AgentEvent,
    AgentRunRequest,
    AgentRunResult,
    CancelToken,
    Emit,
    Finish,
    Message,
    Provider,
    ProviderCall,
    SessionStore,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    Usage,
    UsageReport,
)

EMPTY_REPLY = "No response from OpenClaw."
# A surrogate code point in a decoded str is always a lone one (JSON pairs are joined on decode).
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_RETRYABLE_STATUS = (429, 500, 502, 503, 504)


def _ignore(event: AgentEvent) -> None:
    pass


def _now_ms() -> int:
    return int(time.time() * 1000)


class _Round:
    """One provider call's output, accumulated as it streams."""

    __slots__ = ("text", "calls", "finish", "usage", "delivered")

    def __init__(self) -> None:
        self.text: list[str] = []
        self.calls: dict[int, list[str]] = {}  # index -> [id, name, arguments...]
        self.finish = "stop"
        self.usage = Usage()
        self.delivered = False  # a delta reached the caller: no fallback after this

    def tool_calls(self) -> list[ToolCall]:
        return [
            ToolCall(parts[0] or f"call_{index}", parts[1], "".join(parts[2:]))
            for index, parts in sorted(self.calls.items())
        ]


def _stream_round(
    provider: Provider, call: ProviderCall, emit: Emit, cancel: CancelToken
) -> _Round:
    out = _Round()
    try:
        _consume(provider, call, emit, cancel, out)
    except UpstreamError as exc:
        exc.delivered = out.delivered  # type: ignore[attr-defined]
        raise
    if cancel.is_set():
        raise RunCancelled()
    return out


def _consume(
    provider: Provider, call: ProviderCall, emit: Emit, cancel: CancelToken, out: _Round
) -> None:
    with closing(provider.stream(call, cancel)) as events:  # type: ignore[type-var]
        for event in events:
            if cancel.is_set():
                raise RunCancelled()
            if isinstance(event, TextDelta):
                # An upstream's lone surrogate ("\ud800") cannot be encoded as UTF-8 by any
                # surface: the JSON answer would 500 and the SSE stream break mid-frame.
                text = _LONE_SURROGATE.sub("\ufffd", event.text)
                out.text.append(text)
                out.delivered = True
                emit(AgentEvent("assistant", {"delta": text}))
            elif isinstance(event, ToolCallDelta):
                parts = out.calls.get(event.index)
                if parts is None:
                    parts = out.calls[event.index] = [event.id or "", event.name or ""]
                    first = True
                else:
                    first = False
                    if event.name and not parts[1]:
                        parts[1] = event.name
                arguments = _LONE_SURROGATE.sub("\ufffd", event.arguments)
                parts.append(arguments)
                out.delivered = True
                emit(
                    AgentEvent(
                        "tool_call",
                        {
                            "index": event.index,
                            "id": parts[0] if first else None,
                            "name": parts[1] if first else None,
                            "arguments": arguments,
                        },
                    )
                )
            elif isinstance(event, UsageReport):
                out.usage.add(event.usage)
            elif isinstance(event, Finish):
                out.finish = event.reason


def _call_with_fallbacks(
    request: AgentRunRequest,
    call: ProviderCall,
    providers: Mapping[str, Provider],
    emit: Emit,
    cancel: CancelToken,
) -> tuple[_Round, str]:
    """Try the agent's model chain; a retryable failure before any delta moves to the next."""
    chain = (request.model_override,) if request.model_override else request.agent.model.chain
    for position, ref in enumerate(chain):
        provider_id, _, model = ref.partition("/")
        provider = providers.get(provider_id)
        if provider is None:
            raise GatewayError(f"provider '{provider_id}' is not configured")
        call.model = model
        try:
            return _stream_round(provider, call, emit, cancel), ref
        except UpstreamError as exc:
            last = position == len(chain) - 1
            if last or exc.status not in _RETRYABLE_STATUS or getattr(exc, "delivered", False):
                raise
    raise GatewayError()  # unreachable: the chain is never empty


def run_agent(
    request: AgentRunRequest,
    *,
    providers: Mapping[str, Provider],
    store: SessionStore,
    emit: Emit | None = None,
    cancel: CancelToken | None = None,
    lock_wait_seconds: float = 30.0,
    max_turns: int = 200,
) -> AgentRunResult:
    """Run one agent turn: lease, transcript, provider stream, atomic append. See DESIGN.md."""
    emit = emit or _ignore
    cancel = cancel or CancelToken()
    lease = (
        nullcontext() if request.stateless else store.lease(request.session_key, lock_wait_seconds)
    )
    with lease:
        transcript = [] if request.stateless else store.load(request.session_key)
        conversation = build_conversation(request, transcript, max_turns)
        call = ProviderCall(
            model="",
            system=system_prompt(request),
            messages=conversation.upstream,
            tools=request.tools,
            tool_choice=request.tool_choice,
            options=request.options,
        )
        emit(AgentEvent("lifecycle", {"phase": "start", "startedAt": _now_ms()}))
        try:
            round_, model_ref = _call_with_fallbacks(request, call, providers, emit, cancel)
            tool_calls = round_.tool_calls()
            text = "".join(round_.text)
            finish = round_.finish
            if tool_calls:
                finish = "tool_calls"
            elif request.tool_choice == "required":
                raise UpstreamError(
                    "The model did not call a tool although tool_choice is required."
                )
            elif not text:
                text = EMPTY_REPLY
                emit(AgentEvent("assistant", {"delta": text}))
            if round_.usage.total_tokens:
                emit(AgentEvent("usage", {"usage": round_.usage}))
            if not request.stateless:
                _append_turn(
                    store, request, conversation.to_store, text, tool_calls, round_.usage, model_ref
                )
        except RunCancelled:
            emit(AgentEvent("lifecycle", {"phase": "aborted", "endedAt": _now_ms()}))
            raise
        except GatewayError as exc:
            emit(
                AgentEvent(
                    "lifecycle", {"phase": "error", "error": exc.message, "endedAt": _now_ms()}
                )
            )
            raise
        emit(AgentEvent("lifecycle", {"phase": "end", "endedAt": _now_ms()}))
    return AgentRunResult(
        run_id=request.run_id,
        session_key=request.session_key,
        text=text,
        tool_calls=tool_calls,
        finish_reason=finish,
        usage=round_.usage,
        model=model_ref,
    )


def _append_turn(
    store: SessionStore,
    request: AgentRunRequest,
    new: list[Message],
    text: str,
    tool_calls: list[ToolCall],
    usage: Usage,
    model_ref: str,
) -> None:
    now = _now_ms()
    entries: list[dict[str, Any]] = []
    for message in new:
        entry = message.to_dict()
        entry["timestamp"] = now
        entry["run_id"] = request.run_id
        entries.append(entry)
    reply = Message("assistant", text, tool_calls=tuple(tool_calls)).to_dict()
    reply.update(timestamp=now, run_id=request.run_id, model=model_ref, usage=usage.to_openai())
    entries.append(reply)
    store.append(request.session_key, request.agent.id, entries)
