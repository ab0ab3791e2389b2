"""The HTTP surface: blueprints, per-request hooks and error shapes."""

from __future__ import annotations

from flask import Flask

from . import chat_completions, health, models
from .errors import register_error_handlers
from .hooks import register_hooks


def register_http(app: Flask, chat_completions_enabled: bool) -> None:
    """Attach the routes; a disabled endpoint is simply not routed (404 before auth)."""
    register_hooks(app)
    register_error_handlers(app)
    app.register_blueprint(health.bp)
    if chat_completions_enabled:
        app.register_blueprint(chat_completions.bp)
        app.register_blueprint(models.bp)
