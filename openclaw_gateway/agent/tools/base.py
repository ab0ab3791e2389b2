"""What every tool module shares: the error a tool raises and argument helpers."""

from __future__ import annotations

from typing import Any


class ToolError(Exception):
    """A tool refused or failed; the message goes back to the model (never to the client)."""


def string_arg(args: dict[str, Any], name: str, *, default: str | None = None) -> str:
    value = args.get(name, default)
    if value is None:
        raise ToolError(f"missing argument '{name}'")
    if not isinstance(value, str):
        raise ToolError(f"argument '{name}' must be a string")
    return value
