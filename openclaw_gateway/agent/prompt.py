"""Prompt assembly: the system prompt, and which messages are history, new, and sent upstream."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import MissingUserMessage
from .types import AgentRunRequest, Message


def system_prompt(request: AgentRunRequest) -> str:
    """The agent's configured prompt, then the request's extra system prompt."""
    parts = [request.agent.system_prompt, request.extra_system_prompt]
    return "\n\n".join(p for p in parts if p)


@dataclass(slots=True)
class Conversation:
    upstream: list[Message]  # what the provider receives (after the system prompt)
    to_store: list[Message]  # what this turn adds to the transcript, before the reply


def _limit_turns(messages: list[Message], max_turns: int) -> list[Message]:
    """Keep the newest ``max_turns`` turns (a turn starts at a user message)."""
    starts = [i for i, m in enumerate(messages) if m.role == "user"]
    if len(starts) <= max_turns:
        return messages
    return messages[starts[-max_turns] :]


def new_messages(client: list[Message]) -> list[Message]:
    """Only the messages after the client's last assistant message are new."""
    for i in range(len(client) - 1, -1, -1):
        if client[i].role == "assistant":
            return client[i + 1 :]
    return client


def build_conversation(
    request: AgentRunRequest, transcript: list[dict[str, Any]], max_turns: int
) -> Conversation:
    """Decide what goes upstream and what gets stored, for a stateless or stateful run.

    Stateless: the client's whole conversation goes upstream, nothing is stored. Stateful: the
    stored transcript plus the client's new messages go upstream; on the first turn the client's
    history seeds the transcript, later its resent history is not stored twice.
    """
    client = request.messages
    if not client or client[-1].role not in ("user", "tool"):
        raise MissingUserMessage()
    if request.stateless:
        return Conversation(upstream=client, to_store=[])
    if not transcript:
        return Conversation(upstream=_limit_turns(client, max_turns), to_store=list(client))
    fresh = new_messages(client)
    history = [Message.from_dict(entry) for entry in transcript]
    return Conversation(upstream=_limit_turns(history + fresh, max_turns), to_store=fresh)
