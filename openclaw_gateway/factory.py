"""Build the Flask app around one per-process ``Gateway``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask

from .config import Settings, load_settings, settings_from_dict
from .http import register_http
from .http.context import EXTENSION_KEY
from .http.urlmap import GatewayFlask
from .runtime import Gateway
from .server import DRAIN_HOOK
from .ws.route import register_ws


def _settings(config: Settings | Mapping[str, Any] | str | None) -> Settings:
    if isinstance(config, Settings):
        return config
    if config is None or isinstance(config, str):
        return load_settings(config)
    return settings_from_dict(config)


def build_app(config: Settings | Mapping[str, Any] | str | None = None) -> Flask:
    settings = _settings(config)
    app = GatewayFlask("openclaw_gateway")
    runtime = Gateway(settings)
    app.extensions[EXTENSION_KEY] = runtime
    register_http(app, settings.gateway.http.chat_completions.enabled)
    register_ws(app)
    # The gunicorn worker calls this on SIGTERM (it finds the hook on the loaded app).
    setattr(app, DRAIN_HOOK, runtime.start_drain)
    return app
