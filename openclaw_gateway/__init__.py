"""openclaw-gateway: an OpenClaw-compatible agent gateway (OpenAI Chat Completions + WebSocket).

Importing the package stays light (gunicorn's master imports the worker class and config before
forking, and gevent must patch before Flask or urllib3 load), so ``create_app`` imports lazily.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from flask import Flask

    from .config import Settings


def create_app(config: Settings | Mapping[str, Any] | str | None = None) -> Flask:
    """Create and configure the app: ``config`` is settings, a raw config dict, a path, or None
    (found the usual way: ``OPENCLAW_CONFIG_PATH``, the state dir, built-in defaults)."""
    from .factory import build_app

    return build_app(config)
