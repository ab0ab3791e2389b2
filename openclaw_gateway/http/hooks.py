"""Per-request checks in SPEC order (path, method, auth); ``observe.py`` adds the headers every
response carries."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask, current_app, g, request

from ..security.auth import bearer_secret
from .context import gateway
from .observe import note_request
from .protocol import header

F = TypeVar("F", bound=Callable[..., Any])


def public(view: F) -> F:
    """Mark a view as answering without auth."""
    view.openclaw_public = True  # type: ignore[attr-defined]
    return view


def _before_request() -> None:
    req = request._get_current_object()  # type: ignore[attr-defined]  # one proxy lookup
    rule = req.url_rule
    if rule is None:
        return  # 404/405 come before auth
    environ = req.environ
    runtime = gateway()
    g.client_ip = client_ip = runtime.client_ips.resolve(req.remote_addr or "", req.headers)
    note_request(environ, rule.rule, client_ip)
    view = current_app.view_functions.get(req.endpoint or "")
    if getattr(view, "openclaw_public", False):
        return
    runtime.guard.verify(client_ip, bearer_secret(header(environ, "Authorization")))


def register_hooks(app: Flask) -> None:
    app.before_request(_before_request)
