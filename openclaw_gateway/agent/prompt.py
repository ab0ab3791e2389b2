"""Prompt assembly: the system prompt, and which messages are history, new, and sent upstream."""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Sequence
from dataclasses import dataclass

from .errors import MissingUserMessage
from .types import AgentRunRequest, Message

# Read from the agent's workspace folder into its system prompt, in this order.
WORKSPACE_PROMPT_FILES = ("AGENTS.md", "SOUL.md", "USER.md", "IDENTITY.md", "TOOLS.md")
WORKSPACE_FILE_MAX = 64 * 1024


class WorkspacePrompts:
    """The workspace prompt files, each re-read only when its mtime or size changed.

    One instance lives for the process (the runtime owns it). A workspace is checked (one
    ``lstat`` per file) at most every ``recheck_seconds``, so the hot path is a dict lookup and
    an edit shows up within that time. A file is read only if it is a regular file, or a symlink
    whose target stays inside the workspace; at most ``WORKSPACE_FILE_MAX`` bytes of it.
    """

    def __init__(self, recheck_seconds: float = 1.0) -> None:
        self.recheck_seconds = recheck_seconds
        self._files: dict[str, tuple[int, int, int, str]] = {}
        self._joined: dict[str, tuple[float, str]] = {}

    def text(self, workspace: str) -> str:
        """The workspace's prompt files joined by blank lines (empty when there are none)."""
        now = time.monotonic()
        checked = self._joined.get(workspace)
        if checked is not None and now - checked[0] < self.recheck_seconds:
            return checked[1]
        parts = []
        for name in WORKSPACE_PROMPT_FILES:
            text = self._read(workspace, os.path.join(workspace, name))
            if text:
                parts.append(text)
        joined = "\n\n".join(parts)
        self._joined[workspace] = (now, joined)
        return joined

    def _read(self, workspace: str, path: str) -> str:
        try:
            info = os.lstat(path)
            if stat.S_ISLNK(info.st_mode):
                real = os.path.realpath(path)
                root = os.path.realpath(workspace)
                if not real.startswith(root + os.sep):
                    return ""
                info = os.stat(real)
        except OSError:
            self._files.pop(path, None)
            return ""
        if not stat.S_ISREG(info.st_mode):
            return ""
        key = (info.st_mtime_ns, info.st_size, info.st_ino)
        cached = self._files.get(path)
        if cached is not None and cached[:3] == key:
            return cached[3]
        try:
            with open(path, "rb") as f:
                data = f.read(WORKSPACE_FILE_MAX)
        except OSError:
            return ""
        text = data.decode("utf-8", errors="replace").strip()
        self._files[path] = (*key, text)
        return text


def system_prompt(request: AgentRunRequest, workspace: WorkspacePrompts | None = None) -> str:
    """The agent's configured prompt, its workspace files, then the request's extra prompt."""
    files = ""
    if request.agent.workspace:
        files = (workspace or WorkspacePrompts()).text(request.agent.workspace)
    parts = [request.agent.system_prompt, files, request.extra_system_prompt]
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
    request: AgentRunRequest, history: Sequence[Message], max_turns: int
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
    if not history:
        return Conversation(upstream=_limit_turns(client, max_turns), to_store=list(client))
    fresh = new_messages(client)
    return Conversation(upstream=_limit_turns([*history, *fresh], max_turns), to_store=fresh)
