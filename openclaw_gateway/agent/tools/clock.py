"""``current_time``: the gateway's clock, optionally in an IANA time zone."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .base import ToolError, string_arg

DESCRIPTION = "Return the current date and time (ISO 8601), optionally in an IANA time zone."
PARAMETERS = {
    "type": "object",
    "properties": {
        "timezone": {"type": "string", "description": "IANA zone, e.g. Europe/Paris; default UTC"}
    },
    "additionalProperties": False,
}


def current_time(args: dict[str, Any]) -> str:
    """Return ``{"iso", "unix", "timezone"}`` as JSON text."""
    name = string_arg(args, "timezone", default="UTC") or "UTC"
    try:
        zone = UTC if name.upper() == "UTC" else ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ToolError(f"unknown time zone '{name[:64]}'") from None
    now = datetime.now(zone)
    return json.dumps(
        {"iso": now.isoformat(timespec="seconds"), "unix": int(now.timestamp()), "timezone": name}
    )
