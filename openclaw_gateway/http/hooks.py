"""Per-request checks in SPEC order (path, method, auth) and the headers every response carries."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask, Response, current_app, g, request
from werkzeug.http import HTTP_STATUS_CODES

from ..security.auth import bearer_secret
from .context import gateway
from .protocol import header

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}
F = TypeVar("F", bound=Callable[..., Any])
_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# Werkzeug upper-cases the reason phrase ("400 BAD REQUEST"); OpenClaw (Node) sends the
# registered one ("400 Bad Request"), which is what clients print in their errors.
_STATUS_LINES = {code: f"{code} {phrase}" for code, phrase in HTTP_STATUS_CODES.items()}


def public(view: F) -> F:
    """Mark a view as answering without auth."""
    view.openclaw_public = True  # type: ignore[attr-defined]
    return view


def _before_request() -> None:
    req = request._get_current_object()  # type: ignore[attr-defined]  # one proxy lookup
    environ = req.environ
    incoming = header(environ, "X-Request-ID") or ""
    g.request_id = incoming if _SANE_REQUEST_ID.match(incoming) else uuid.uuid4().hex
    if req.routing_exception is not None:
        return  # 404/405 come before auth
    runtime = gateway()
    g.client_ip = client_ip = runtime.client_ips.resolve(req.remote_addr or "", req.headers)
    view = current_app.view_functions.get(req.endpoint or "")
    if getattr(view, "openclaw_public", False):
        return
    runtime.guard.verify(client_ip, bearer_secret(header(environ, "Authorization")))


def _after_request(response: Response) -> Response:
    response.status = _STATUS_LINES.get(response.status_code, response.status)
    headers = response.headers
    for name, value in SECURITY_HEADERS.items():
        headers[name] = value
    headers["X-Request-ID"] = g.get("request_id") or uuid.uuid4().hex
    return response


def register_hooks(app: Flask) -> None:
    app.before_request(_before_request)
    app.after_request(_after_request)
