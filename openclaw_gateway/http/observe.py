"""The WSGI layer around the Flask app: the headers every response carries, and one JSON log
line and the request metrics per HTTP request, taken at its last byte.

A WSGI middleware, so a stream is measured to its end (Flask's hooks run before the first
event), and so the fixed response headers (request id, security headers, the status line's
reason phrase) are added as plain tuples on their way to the server, for every response, errors
included, without a Flask hook per request. Views add what only they know (agent, session) with
``note_run``; the line is built with one ``json.dumps`` and written with one ``write`` so lines
from several workers never interleave. It carries no secret and no message text (no query
string, no headers, the session key as a keyed digest) unless ``logging.content`` is true.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from flask import Flask
from werkzeug.http import HTTP_STATUS_CODES

from ..agent.types import AgentRunRequest
from ..runtime import Gateway
from .protocol import header

FIELDS_KEY = "openclaw.log"
StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

SECURITY_HEADERS = (
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("Permissions-Policy", "camera=(), microphone=(), geolocation=()"),
)
_encode_line = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# Werkzeug upper-cases the reason phrase ("400 BAD REQUEST"); OpenClaw (Node) sends the
# registered one ("400 Bad Request"), which is what clients print in their errors.
_STATUS_LINES = {code: f"{code} {phrase}" for code, phrase in HTTP_STATUS_CODES.items()}


def write_stdout(line: bytes) -> None:
    """Write one line to stdout in as few syscalls as the pipe allows (atomic below PIPE_BUF)."""
    view = memoryview(line)
    while view:
        view = view[os.write(1, view) :]


def _new_request_id(environ: dict[str, Any]) -> str:
    incoming = environ.get("HTTP_X_REQUEST_ID")
    if incoming and _SANE_REQUEST_ID.match(incoming):
        return incoming  # type: ignore[no-any-return]
    return os.urandom(16).hex()


class _EnvironHeaders:
    """``get(name, default)`` over the environ, for the client IP of a request no hook saw."""

    def __init__(self, environ: dict[str, Any]) -> None:
        self.environ = environ

    def get(self, name: str, default: str = "") -> str:
        value = header(self.environ, name)
        return default if value is None else value


class _Observed:
    """The response body, unchanged, with the observation run when the server closes it.

    Slots, not a closure: for a stream it lives as long as the stream.
    """

    __slots__ = ("_body", "_observer", "_environ", "_fields", "_started")

    def __init__(
        self,
        body: Iterable[bytes],
        observer: RequestObserver,
        environ: dict[str, Any],
        fields: dict[str, Any],
        started: float,
    ) -> None:
        self._body = body
        self._observer = observer
        self._environ = environ
        self._fields = fields
        self._started = started

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._body)

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            self._observer.finish(self._environ, self._fields, self._started)


class RequestObserver:
    """WSGI middleware: stamp every response's headers; count, time and log every request once
    its response is complete."""

    def __init__(
        self, app: WsgiApp, runtime: Gateway, write: Callable[[bytes], None] = write_stdout
    ) -> None:
        self.app = app
        self.metrics = runtime.metrics
        self.client_ips = runtime.client_ips
        self.write = write
        self._pid = os.getpid()
        auth = runtime.settings.gateway.auth
        # A client may put the secret where it does not belong (a path): never log it.
        self._secret = auth.secret if auth.mode != "none" else ""

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Any:
        started = time.perf_counter()
        rid = _new_request_id(environ)
        fields: dict[str, Any] = {"request_id": rid}
        environ[FIELDS_KEY] = fields

        def observed_start(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Any:
            code = int(status[:3])
            fields["status"] = code
            headers = [*headers, *SECURITY_HEADERS, ("X-Request-ID", rid)]
            return start_response(_STATUS_LINES.get(code, status), headers, exc_info)

        try:
            body = self.app(environ, observed_start)
        except BaseException:
            self.finish(environ, fields, started)
            raise
        if environ.get("wsgi.websocket") is not None:
            # The app returns when the socket closes, and the server never closes body.
            self.finish(environ, fields, started)
            return body
        return _Observed(body, self, environ, fields, started)

    def finish(self, environ: dict[str, Any], fields: dict[str, Any], started: float) -> None:
        self._finish(environ, fields, time.perf_counter() - started)

    def _finish(self, environ: dict[str, Any], fields: dict[str, Any], seconds: float) -> None:
        status = fields.pop("status", 500)
        route = fields.pop("route", "other")
        self.metrics.count_request(route, status, seconds)
        path = environ.get("PATH_INFO", "")
        if self._secret and self._secret in path:
            path = path.replace(self._secret, "***")
        if "client_ip" not in fields:  # 404/405 answer before the hooks resolve it
            fields["client_ip"] = self.client_ips.resolve(
                environ.get("REMOTE_ADDR") or "", _EnvironHeaders(environ)
            )
        encode = _encode_line
        # The fixed fields formatted in place (``round`` and the float's repr ran the float
        # conversion twice each), then the request's own fields (never empty: the request id).
        # ``pid`` says which worker: figures per worker add up in /metrics.
        line = (
            f'{{"ts":{time.time():.3f},"event":"request",'
            f'"method":{encode(environ.get("REQUEST_METHOD", ""))},"path":{encode(path)},'
            f'"status":{status},"duration_ms":{seconds * 1000:.1f},"pid":{self._pid},'
            f"{encode(fields)[1:]}\n"
        )
        self.write(line.encode())


_digest_keys: dict[str, bytes] = {}


def session_digest(runtime: Gateway, session_key: str) -> str:
    """A stable, non-reversible name for a session key (keyed with the gateway secret).

    Keyed BLAKE2b (a MAC by construction): HMAC-SHA256 through OpenSSL 3 costs several times
    as much per call, on every request.
    """
    secret = runtime.settings.gateway.auth.secret
    key = _digest_keys.get(secret)
    if key is None:
        material = b"openclaw-log\0" + secret.encode("utf-8", "surrogatepass")
        key = _digest_keys[secret] = hashlib.sha256(material).digest()
    return hashlib.blake2b(session_key.encode(), key=key, digest_size=8).hexdigest()


def note_request(environ: dict[str, Any], route: str, client_ip: str) -> None:
    """Record the matched route and the resolved client IP (the request hooks know them)."""
    fields = environ.get(FIELDS_KEY)
    if fields is not None:
        fields["route"] = route
        fields["client_ip"] = client_ip


def note_run(runtime: Gateway, environ: dict[str, Any], run: AgentRunRequest) -> None:
    """Add the run's agent, session (digest) and, with ``logging.content``, its input text."""
    fields = environ.get(FIELDS_KEY)
    if fields is None:
        return
    fields["agent"] = run.agent.id
    fields["session"] = session_digest(runtime, run.session_key)
    if runtime.settings.log_content and run.messages:
        fields["input"] = run.messages[-1].text


def note_output(runtime: Gateway, environ: dict[str, Any], text: str) -> None:
    """With ``logging.content``, add the reply text to this request's line."""
    fields = environ.get(FIELDS_KEY)
    if fields is not None and runtime.settings.log_content:
        fields["output"] = text


def register_observer(app: Flask, runtime: Gateway) -> None:
    app.wsgi_app = RequestObserver(app.wsgi_app, runtime)  # type: ignore[method-assign]
