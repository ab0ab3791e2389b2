"""The HTTP surface: blueprints, per-request hooks and error shapes."""

from __future__ import annotations

from flask import Flask

from . import chat_completions, health, models
from .context import EXTENSION_KEY
from .cors import register_cors
from .errors import register_error_handlers
from .hooks import register_hooks
from .metrics import register_metrics
from .observe import register_observer
from .streams import register_streams


def register_http(app: Flask, chat_completions_enabled: bool) -> None:
    """Attach the routes; a disabled endpoint is simply not routed (404 before auth)."""
    runtime = app.extensions[EXTENSION_KEY]
    settings = runtime.settings.gateway
    # CORS first: a preflight is answered before the auth hook.
    register_cors(app, settings.http.cors_allowed_origins)
    register_hooks(app)
    register_error_handlers(app)
    register_observer(app, runtime)
    register_streams(app, runtime)
    app.register_blueprint(health.bp)
    register_metrics(app, settings.metrics_public)
    if chat_completions_enabled:
        app.register_blueprint(chat_completions.bp)
        app.register_blueprint(models.bp)
