"""The per-process runtime as the HTTP surface reaches it."""

from __future__ import annotations

from flask import current_app, g

from ..runtime import Gateway

EXTENSION_KEY = "openclaw_gateway"


def gateway() -> Gateway:
    return current_app.extensions[EXTENSION_KEY]  # type: ignore[no-any-return]


def client_ip() -> str:
    """The client's IP as resolved for this request (trusted proxies applied)."""
    return g.client_ip  # type: ignore[no-any-return]
