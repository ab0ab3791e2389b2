"""Agent tools: functions the gateway itself runs when the model calls them.

Each tool is off unless the agent's ``tools.allow`` names it (or ``"*"``, or a group such as
``"group:workspace"``); ``tools.deny`` wins over ``allow``. The model sees each enabled tool as an
OpenAI function (``spec``); a call runs ``tool.run(arguments, context)`` and its string result, or
the message of the ``ToolError`` it raised, goes back to the model as a ``tool`` message.

    current_time                      clock.py
    workspace_list / _read / _write   workspace.py   (confined to the agent's workspace folder)
    web_fetch                         web.py         (public http/https addresses only)
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from ...config import AgentSettings
from ..errors import RunCancelled
from ..types import CancelToken
from . import clock, web, workspace
from .base import ToolError

log = logging.getLogger("openclaw_gateway.tools")


@dataclass(frozen=True, slots=True)
class ToolContext:
    """What a tool may touch: the agent's workspace folder and the run's cancel token."""

    workspace: str | None
    cancel: CancelToken


@dataclass(frozen=True, slots=True)
class AgentTool:
    name: str
    description: str
    parameters: Mapping[str, Any]
    run: Callable[[dict[str, Any], ToolContext], str]
    needs_workspace: bool = False

    @property
    def spec(self) -> dict[str, Any]:
        """The OpenAI ``tools[]`` entry the model sees."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": dict(self.parameters),
            },
        }


def _ws(fn: Callable[[str, dict[str, Any]], str]) -> Callable[[dict[str, Any], ToolContext], str]:
    def run(args: dict[str, Any], ctx: ToolContext) -> str:
        if not ctx.workspace:
            raise ToolError("this agent has no workspace folder configured")
        return fn(ctx.workspace, args)

    return run


BUILTIN_TOOLS: Mapping[str, AgentTool] = MappingProxyType(
    {
        t.name: t
        for t in (
            AgentTool(
                "current_time",
                clock.DESCRIPTION,
                clock.PARAMETERS,
                lambda args, ctx: clock.current_time(args),
            ),
            AgentTool(
                "workspace_list",
                workspace.LIST_DESCRIPTION,
                workspace.LIST_PARAMETERS,
                _ws(workspace.list_files),
                needs_workspace=True,
            ),
            AgentTool(
                "workspace_read",
                workspace.READ_DESCRIPTION,
                workspace.READ_PARAMETERS,
                _ws(workspace.read_file),
                needs_workspace=True,
            ),
            AgentTool(
                "workspace_write",
                workspace.WRITE_DESCRIPTION,
                workspace.WRITE_PARAMETERS,
                _ws(workspace.write_file),
                needs_workspace=True,
            ),
            AgentTool(
                "web_fetch",
                web.DESCRIPTION,
                web.PARAMETERS,
                lambda args, ctx: web.web_fetch(args, ctx.cancel),
            ),
        )
    }
)

TOOL_GROUPS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "group:workspace": ("workspace_list", "workspace_read", "workspace_write"),
        "group:web": ("web_fetch",),
        "*": tuple(BUILTIN_TOOLS),
    }
)


def _expand(names: tuple[str, ...]) -> set[str]:
    out: set[str] = set()
    for name in names:
        out.update(TOOL_GROUPS.get(name, (name,)))
    return out


def enabled_tools(agent: AgentSettings) -> dict[str, AgentTool]:
    """The agent's tools: allowed, not denied, and usable (workspace tools need a workspace)."""
    if agent.max_tool_rounds <= 0 or not agent.tools_allow:
        return {}
    names = _expand(agent.tools_allow) - _expand(agent.tools_deny)
    return {
        name: tool
        for name, tool in BUILTIN_TOOLS.items()
        if name in names and (agent.workspace or not tool.needs_workspace)
    }


def run_tool(tool: AgentTool, arguments: str, ctx: ToolContext) -> tuple[str, bool]:
    """Run one call; return ``(text for the model, is_error)``. Never raises for tool faults."""
    try:
        args = json.loads(arguments) if arguments.strip() else {}
    except ValueError:
        return "Error: the arguments are not valid JSON.", True
    if not isinstance(args, dict):
        return "Error: the arguments must be a JSON object.", True
    try:
        return tool.run(args, ctx), False
    except ToolError as exc:
        return f"Error: {exc}", True
    except OSError as exc:
        # Never leak host paths: the strerror alone says what went wrong.
        return f"Error: {exc.strerror or 'I/O error'}", True
    except RunCancelled:
        raise
    except Exception:  # noqa: BLE001 - a faulty tool must not take the run down with it
        log.exception("agent tool %s failed", tool.name)
        return "Error: the tool failed unexpectedly.", True


__all__ = [
    "AgentTool",
    "BUILTIN_TOOLS",
    "ToolContext",
    "ToolError",
    "enabled_tools",
    "run_tool",
]
