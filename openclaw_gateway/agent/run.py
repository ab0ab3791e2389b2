"""``run_agent``: the one synchronous codepath every surface (HTTP, SSE, WebSocket, CLI) calls.

A run is a loop of provider rounds:

1. Call the model (the agent's model chain: on a retryable failure, i.e. connect error, timeout,
   429 or 5xx, *before anything reached the caller*, the next model is tried; never after).
2. Text deltas stream to ``emit`` as they come. Tool calls are split by name: a call of one of
   the agent's tools (``tools.allow``) is the gateway's business and is never streamed as a
   client tool call; any other call is a *client* tool call (OpenAI function calling), streamed
   as ``tool_call`` events with client-only indexes.
3. Agent tool calls run (``tool_start`` / ``tool_result`` events); their results go back to the
   model as ``tool`` messages and the loop continues, at most ``maxToolRounds`` rounds. A model
   that asks for agent tools once more after that ends the run with ``ToolRoundLimit`` (502,
   ``tool_round_limit``): a clear error rather than a made-up answer, and like every failed
   run it writes nothing to the transcript.
4. Client tool calls end the run with ``finish_reason: "tool_calls"``. When one turn mixes agent
   and client tools, the agent tools run first (their results are stored with the turn), then
   the client calls are returned; the client's ``tool`` results continue the turn next request.
5. The turn (new user/tool messages, every assistant/tool exchange, the final reply with the
   usage summed over all rounds) is appended to the transcript in one atomic write.

Once an agent tool has run the run has changed state, so errors from then on carry
``should_retry = False`` (HTTP: ``x-should-retry: false``).
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from contextlib import AbstractContextManager, closing, nullcontext
from typing import Any

from .errors import GatewayError, RunCancelled, ToolRoundLimit, UpstreamError
from .prompt import WorkspacePrompts, build_conversation, system_prompt
from .tools import AgentTool, ToolContext, enabled_tools, run_tool
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
    SessionTurn,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    Usage,
    UsageReport,
)

EMPTY_REPLY = "No response from OpenClaw."
# A surrogate code point in a decoded str is always a lone one (JSON pairs are joined on decode).
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _ignore(event: AgentEvent) -> None:
    pass


def _now_ms() -> int:
    return int(time.time() * 1000)


class _Pieces:
    """Text that arrives a delta at a time, joined as it grows.

    A list of one str per delta costs ~60 bytes a token (object header and list slot) for as
    long as the run lasts; a reply streamed to a held connection would keep thousands. The
    small pieces at the end are merged like a binary counter: O(log n) pieces, and each
    character is copied O(log n) times.
    """

    __slots__ = ("_parts",)

    def __init__(self) -> None:
        self._parts: list[str] = []

    def append(self, piece: str) -> None:
        parts = self._parts
        parts.append(piece)
        while len(parts) > 1 and len(parts[-2]) <= len(parts[-1]):
            last = parts.pop()
            parts[-1] += last

    def text(self) -> str:
        return "".join(self._parts)


class _Call:
    """One tool call of a round, accumulated from its deltas."""

    __slots__ = ("id", "name", "arguments", "client_index")

    def __init__(self, call_id: str, name: str) -> None:
        self.id = call_id
        self.name = name
        self.arguments = _Pieces()
        self.client_index: int | None = None  # set once streamed to the caller as a client call


class _Run:
    """State shared by the rounds of one run."""

    def __init__(
        self, agent_tools: Mapping[str, AgentTool], emit: Emit | None, cancel: CancelToken
    ) -> None:
        self.agent_tools = agent_tools
        # Nobody listening (a JSON answer): the per-delta and lifecycle events are not built.
        self.listening = emit is not None
        self.emit = emit or _ignore
        self.cancel = cancel
        self.delivered = False  # text or a client tool call reached the caller: no fallback
        self.tools_ran = False
        self.usage = Usage()
        self.text: list[str] = []


class _Round:
    """One provider call's output, accumulated as it streams."""

    __slots__ = ("text", "calls", "finish", "usage", "client_calls")

    def __init__(self) -> None:
        self.text = _Pieces()
        self.calls: dict[int, _Call] = {}
        self.finish = "stop"
        self.usage = Usage()
        self.client_calls = 0

    def tool_calls(self) -> list[ToolCall]:
        """Every named call in upstream order (nameless fragments are dropped)."""
        if not self.calls:
            return []
        return [
            ToolCall(call.id or f"call_{index}", call.name, call.arguments.text())
            for index, call in sorted(self.calls.items())
            if call.name
        ]


def _on_tool_delta(run: _Run, out: _Round, event: ToolCallDelta) -> None:
    call = out.calls.get(event.index)
    if call is None:
        call = out.calls[event.index] = _Call(event.id or "", event.name or "")
    else:
        call.id = call.id or event.id or ""
        call.name = call.name or event.name or ""
    arguments = _LONE_SURROGATE.sub("\ufffd", event.arguments)
    call.arguments.append(arguments)
    if not call.name or call.name in run.agent_tools:
        return  # an agent tool (or not yet known): never streamed as a client tool call
    if call.client_index is None:
        call.client_index = out.client_calls
        out.client_calls += 1
        run.delivered = True
        run.emit(
            AgentEvent(
                "tool_call",
                {
                    "index": call.client_index,
                    "id": call.id or f"call_{event.index}",
                    "name": call.name,
                    "arguments": call.arguments.text(),
                },
            )
        )
    elif arguments:
        run.emit(
            AgentEvent(
                "tool_call",
                {
                    "index": call.client_index,
                    "id": None,
                    "name": None,
                    "arguments": arguments,
                },
            )
        )


def _stream_round(provider: Provider, call: ProviderCall, run: _Run) -> _Round:
    out = _Round()
    cancelled = run.cancel.is_set
    with closing(provider.stream(call, run.cancel)) as events:  # type: ignore[type-var]
        for event in events:
            if cancelled():
                raise RunCancelled()
            if isinstance(event, TextDelta):
                if event.text:
                    # An upstream's lone surrogate ("\ud800") cannot be encoded as UTF-8 by any
                    # surface: the JSON answer would 500 and the SSE stream break mid-frame.
                    text = _LONE_SURROGATE.sub("\ufffd", event.text)
                    out.text.append(text)
                    run.delivered = True
                    if run.listening:
                        run.emit(AgentEvent("assistant", {"delta": text}))
            elif isinstance(event, ToolCallDelta):
                _on_tool_delta(run, out, event)
            elif isinstance(event, UsageReport):
                out.usage.add(event.usage)
            elif isinstance(event, Finish):
                out.finish = event.reason
    if run.cancel.is_set():
        raise RunCancelled()
    return out


def _call_with_fallbacks(
    chain: tuple[str, ...],
    start: int,
    call: ProviderCall,
    providers: Mapping[str, Provider],
    run: _Run,
) -> tuple[_Round, int]:
    """Try the model chain from ``start``; a retryable failure before any delivery moves on."""
    for position in range(start, len(chain)):
        provider_id, _, model = chain[position].partition("/")
        provider = providers.get(provider_id)
        if provider is None:
            raise GatewayError(f"provider '{provider_id}' is not configured")
        call.model = model
        try:
            return _stream_round(provider, call, run), position
        except UpstreamError as exc:
            last = position == len(chain) - 1
            if last or not exc.retryable or run.delivered:
                raise
    raise GatewayError()  # unreachable: the chain is never empty


def _run_agent_tools(calls: list[ToolCall], run: _Run, context: ToolContext) -> list[Message]:
    results = []
    for call in calls:
        if run.cancel.is_set():
            raise RunCancelled()
        data = {"id": call.id, "name": call.name, "arguments": call.arguments}
        run.emit(AgentEvent("tool_start", dict(data)))
        run.tools_ran = True
        text, is_error = run_tool(run.agent_tools[call.name], call.arguments, context)
        run.emit(AgentEvent("tool_result", {**data, "result": text, "isError": is_error}))
        results.append(Message("tool", text, tool_call_id=call.id, is_error=is_error))
    return results


def _upstream_tools(
    request: AgentRunRequest, agent_tools: Mapping[str, AgentTool]
) -> list[dict[str, Any]] | None:
    """Client tools plus the agent's; an agent tool shadows a client tool of the same name."""
    client = [
        t for t in request.tools or () if t.get("function", {}).get("name") not in agent_tools
    ]
    tools = client + [tool.spec for tool in agent_tools.values()]
    return tools or None


def _loop(
    request: AgentRunRequest,
    call: ProviderCall,
    providers: Mapping[str, Provider],
    run: _Run,
) -> tuple[list[Message], list[ToolCall], str, str]:
    """Run provider rounds and agent tools; return (exchanges, client calls, finish, model)."""
    chain = (request.model_override,) if request.model_override else request.agent.model.chain
    context = ToolContext(workspace=request.agent.workspace, cancel=run.cancel)
    exchanges: list[Message] = []
    position = 0
    rounds = 0
    while True:
        round_, position = _call_with_fallbacks(chain, position, call, providers, run)
        run.usage.add(round_.usage)
        text = round_.text.text()
        run.text.append(text)
        calls = round_.tool_calls()
        agent_calls = [c for c in calls if c.name in run.agent_tools]
        client_calls = [c for c in calls if c.name not in run.agent_tools]
        if agent_calls:
            if rounds >= request.agent.max_tool_rounds:
                raise ToolRoundLimit(
                    f"The model kept calling tools after {rounds} tool rounds "
                    f"(the agent's maxToolRounds)."
                )
            rounds += 1
            assistant = Message("assistant", text, tool_calls=tuple(calls))
            results = _run_agent_tools(agent_calls, run, context)
            exchanges += [assistant, *results]
            if client_calls:
                return exchanges, client_calls, "tool_calls", chain[position]
            call.messages = [*call.messages, assistant, *results]
            # A forced choice was for the first answer; later rounds may answer in text.
            if call.tool_choice == "required" or isinstance(call.tool_choice, dict):
                call.tool_choice = "auto"
            continue
        if client_calls:
            exchanges.append(Message("assistant", text, tool_calls=tuple(client_calls)))
            return exchanges, client_calls, "tool_calls", chain[position]
        if request.tool_choice == "required" and rounds == 0:
            raise UpstreamError("The model did not call a tool although tool_choice is required.")
        if not "".join(run.text):
            run.text.append(EMPTY_REPLY)
            run.emit(AgentEvent("assistant", {"delta": EMPTY_REPLY}))
            text = EMPTY_REPLY
        exchanges.append(Message("assistant", text))
        return exchanges, [], round_.finish, chain[position]


def run_agent(
    request: AgentRunRequest,
    *,
    providers: Mapping[str, Provider],
    store: SessionStore,
    emit: Emit | None = None,
    cancel: CancelToken | None = None,
    lock_wait_seconds: float = 30.0,
    max_turns: int = 200,
    workspace_prompts: WorkspacePrompts | None = None,
) -> AgentRunResult:
    """Run one agent turn: lease, transcript, provider/tool loop, atomic append. See above."""
    cancel = cancel or CancelToken()
    agent_tools = enabled_tools(request.agent)
    run = _Run(agent_tools, emit, cancel)
    emit = run.emit
    turn: AbstractContextManager[SessionTurn | None] = (
        nullcontext() if request.stateless else store.turn(request.session_key, lock_wait_seconds)
    )
    with turn as session:
        conversation = build_conversation(request, session.history if session else (), max_turns)
        call = ProviderCall(
            model="",
            system=system_prompt(request, workspace_prompts),
            messages=conversation.upstream,
            tools=_upstream_tools(request, agent_tools),
            tool_choice=request.tool_choice,
            options=request.options,
        )
        if run.listening:
            emit(AgentEvent("lifecycle", {"phase": "start", "startedAt": _now_ms()}))
        try:
            exchanges, client_calls, finish, model_ref = _loop(request, call, providers, run)
            if run.usage.total_tokens and run.listening:
                emit(AgentEvent("usage", {"usage": run.usage}))
            if session is not None:
                _append_turn(
                    session, request, conversation.to_store + exchanges, run.usage, model_ref
                )
        except RunCancelled:
            emit(AgentEvent("lifecycle", {"phase": "aborted", "endedAt": _now_ms()}))
            raise
        except GatewayError as exc:
            if run.tools_ran:
                exc.should_retry = False
            emit(
                AgentEvent(
                    "lifecycle", {"phase": "error", "error": exc.message, "endedAt": _now_ms()}
                )
            )
            raise
        if run.listening:
            emit(AgentEvent("lifecycle", {"phase": "end", "endedAt": _now_ms()}))
    return AgentRunResult(
        run_id=request.run_id,
        session_key=request.session_key,
        text="".join(run.text),
        tool_calls=client_calls,
        finish_reason=finish,
        usage=run.usage,
        model=model_ref,
    )


def _append_turn(
    session: SessionTurn,
    request: AgentRunRequest,
    entries_in: list[Message],
    usage: Usage,
    model_ref: str,
) -> None:
    now = _now_ms()
    entries: list[dict[str, Any]] = []
    for message in entries_in:
        entry = message.to_dict()
        entry["timestamp"] = now
        entry["run_id"] = request.run_id
        entries.append(entry)
    # The usage of the whole run sits on its last assistant entry.
    for entry in reversed(entries):
        if entry["role"] == "assistant":
            entry.update(model=model_ref, usage=usage.to_openai())
            break
    session.append(request.agent.id, entries)
