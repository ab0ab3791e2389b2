"""Domain types shared by every layer: messages, run requests and results, events, protocols."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..config import AgentSettings

# ---------------------------------------------------------------------------------------------
# Conversation


@dataclass(frozen=True, slots=True)
class Image:
    """An image part: base64 ``data`` with its ``mime`` type, or a remote ``url``."""

    mime: str = ""
    data: str = ""
    url: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"mime": self.mime, "data": self.data} if self.data else {"url": self.url}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Image:
        return cls(mime=raw.get("mime", ""), data=raw.get("data", ""), url=raw.get("url", ""))


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str
    name: str
    arguments: str

    def to_openai(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }


@dataclass(frozen=True, slots=True)
class Message:
    """One conversation turn as providers and transcripts see it (system prompts live apart)."""

    role: str  # "user" | "assistant" | "tool"
    text: str = ""
    images: tuple[Image, ...] = ()
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    # A tool result that reports a failure (Anthropic's ``is_error``; OpenAI has no such flag).
    is_error: bool = False

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"role": self.role, "text": self.text}
        if self.images:
            out["images"] = [image.to_dict() for image in self.images]
        if self.tool_calls:
            out["tool_calls"] = [
                {"id": c.id, "name": c.name, "arguments": c.arguments} for c in self.tool_calls
            ]
        if self.tool_call_id:
            out["tool_call_id"] = self.tool_call_id
        if self.is_error:
            out["is_error"] = True
        return out

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Message:
        # Called for every transcript entry of every stateful turn: no generators for the
        # (usual) entry without images or tool calls.
        images = raw.get("images")
        calls = raw.get("tool_calls")
        return cls(
            raw["role"],
            raw.get("text", ""),
            tuple([Image.from_dict(i) for i in images]) if images else (),
            tuple([ToolCall(c["id"], c["name"], c["arguments"]) for c in calls]) if calls else (),
            raw.get("tool_call_id"),
            is_error=bool(raw.get("is_error", False)),
        )


@dataclass(slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def add(self, other: Usage) -> None:
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens

    def to_openai(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }


# ---------------------------------------------------------------------------------------------
# A run


@dataclass(slots=True)
class AgentRunRequest:
    """Everything a surface knows about one agent run, independent of the surface."""

    agent: AgentSettings
    session_key: str
    stateless: bool
    # The conversation as the client sent it (history, then the current turn last).
    messages: list[Message]
    run_id: str
    extra_system_prompt: str = ""
    tools: list[dict[str, Any]] | None = None
    tool_choice: Any = None
    # Sampling options passed through to the provider (max_tokens, temperature, ...).
    options: dict[str, Any] = field(default_factory=dict)
    model_override: str | None = None


@dataclass(slots=True)
class AgentRunResult:
    run_id: str
    session_key: str
    text: str
    tool_calls: list[ToolCall]
    finish_reason: str
    usage: Usage
    model: str


@dataclass(frozen=True, slots=True)
class AgentEvent:
    """What ``emit`` receives, in run order. ``stream`` is one of:

    - ``lifecycle``: ``{"phase": "start", "startedAt"}``, then one of ``{"phase": "end", "endedAt"}``,
      ``{"phase": "error", "error": str, "endedAt"}``, ``{"phase": "aborted", "endedAt"}``.
    - ``assistant``: ``{"delta": str}``, reply text as it streams (every round of the tool loop).
    - ``tool_call``: a *client* tool call (OpenAI function calling) streaming back to the caller:
      ``{"index": int, "id": str | None, "name": str | None, "arguments": str}``. The first event
      of an index carries ``id`` and ``name`` (and the arguments so far), later ones ``None`` and
      an ``arguments`` fragment. Indexes count client calls only (0, 1, ...). Agent tool calls
      never appear here.
    - ``tool_start``: the gateway is about to run an *agent* tool:
      ``{"id": str, "name": str, "arguments": str}`` (arguments: the model's JSON text).
    - ``tool_result``: that agent tool finished: ``{"id", "name", "arguments", "result": str,
      "isError": bool}``; ``result`` is exactly what the model receives as the ``tool`` message.
    - ``usage``: ``{"usage": Usage}``, once, summed over every provider round of the run.
    """

    stream: str
    data: dict[str, Any]


Emit = Callable[[AgentEvent], None]


class CancelToken:
    """Set when the caller goes away; callbacks (closing the upstream response) run at once."""

    __slots__ = ("_event", "_callbacks")

    def __init__(self) -> None:
        self._event = threading.Event()
        self._callbacks: list[Callable[[], None]] = []

    def is_set(self) -> bool:
        return self._event.is_set()

    def set(self) -> None:
        if self._event.is_set():
            return
        self._event.set()
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            try:
                callback()
            except Exception:  # noqa: BLE001 - closing a dead socket may fail; the run stops anyway
                pass

    def on_cancel(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` when cancelled (at once if already); ``forget`` it when done."""
        if self._event.is_set():
            callback()
            return
        self._callbacks.append(callback)

    def forget(self, callback: Callable[[], None]) -> None:
        """Drop a callback given to ``on_cancel`` (an equal bound method will do)."""
        if callback in self._callbacks:
            self._callbacks.remove(callback)

    def wait(self, timeout: float | None = None) -> bool:
        return self._event.wait(timeout)


# ---------------------------------------------------------------------------------------------
# Providers


@dataclass(slots=True)
class ProviderCall:
    model: str
    system: str
    messages: list[Message]
    tools: list[dict[str, Any]] | None = None
    tool_choice: Any = None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A fragment of a tool call; ``id`` and ``name`` arrive with the first fragment of an index."""

    index: int
    id: str | None
    name: str | None
    arguments: str


@dataclass(frozen=True, slots=True)
class UsageReport:
    usage: Usage


@dataclass(frozen=True, slots=True)
class Finish:
    reason: str


ProviderEvent = TextDelta | ToolCallDelta | UsageReport | Finish


class Provider(Protocol):
    """A model API. ``stream`` yields events and raises ``UpstreamError`` subclasses."""

    def stream(self, call: ProviderCall, cancel: CancelToken) -> Iterator[ProviderEvent]: ...


# ---------------------------------------------------------------------------------------------
# Sessions


@dataclass(frozen=True, slots=True)
class SessionInfo:
    key: str
    agent_id: str
    updated_at: int  # ms since the epoch
    message_count: int


class SessionTurn(Protocol):
    """A stateful turn in progress: the session's lease is held and its transcript loaded."""

    @property
    def history(self) -> Sequence[Message]:
        """The conversation stored before this turn, oldest first."""
        ...

    def append(self, agent_id: str, entries: list[dict[str, Any]]) -> None:
        """Append the turn's entries in one atomic write, as the last step under the lease (a
        store may release the lease in the same write)."""
        ...


class SessionStore(Protocol):
    """Transcripts and per-session leases. Entries are JSON-ready dicts (``Message.to_dict`` plus
    ``timestamp``, ``run_id`` and, on assistant entries, ``usage``)."""

    def turn(self, session_key: str, wait_seconds: float) -> AbstractContextManager[SessionTurn]:
        """Hold the session's lease for the block and yield its history to append a turn to;
        raise ``SessionBusy`` after ``wait_seconds``. A store takes the lease and loads the
        transcript, and appends and releases, in as few round trips as its medium allows."""
        ...

    def lease(self, session_key: str, wait_seconds: float) -> AbstractContextManager[object]:
        """Hold the session's lease for the block; raise ``SessionBusy`` after ``wait_seconds``."""
        ...

    def load(self, session_key: str) -> list[dict[str, Any]]: ...

    def append(self, session_key: str, agent_id: str, entries: list[dict[str, Any]]) -> None:
        """Append all entries in one atomic write."""
        ...

    def list_sessions(self, limit: int = 1000) -> list[SessionInfo]: ...

    def delete(self, session_key: str) -> bool: ...

    def ping(self) -> None:
        """Raise if the store cannot answer."""
        ...

    def close(self) -> None: ...
