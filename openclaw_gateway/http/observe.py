"""One JSON log line and the request metrics per HTTP request, taken at its last byte.

A WSGI middleware around the Flask app, so a stream is measured to its end (Flask's hooks run
before the first event). Views add what only they know (agent, session) with ``note_run``; the
line is built with one ``json.dumps`` and written with one ``write`` so lines from several
workers never interleave. It carries no secret and no message text (no query string, no
headers, the session key as a keyed digest) unless ``logging.content`` is true.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from flask import Flask, Response, g, request

from ..agent.types import AgentRunRequest
from ..runtime import Gateway
from .context import gateway

FIELDS_KEY = "openclaw.log"
StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def write_stdout(line: bytes) -> None:
    """Write one line to stdout in as few syscalls as the pipe allows (atomic below PIPE_BUF)."""
    view = memoryview(line)
    while view:
        view = view[os.write(1, view) :]


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
    """WSGI middleware: count, time and log every request once its response is complete."""

    def __init__(
        self, app: WsgiApp, runtime: Gateway, write: Callable[[bytes], None] = write_stdout
    ) -> None:
        self.app = app
        self.metrics = runtime.metrics
        self.write = write
        auth = runtime.settings.gateway.auth
        # A client may put the secret where it does not belong (a path): never log it.
        self._secret = auth.secret if auth.mode != "none" else ""

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Any:
        started = time.perf_counter()
        fields: dict[str, Any] = {}
        environ[FIELDS_KEY] = fields

        def observed_start(status: str, headers: Any, exc_info: Any = None) -> Any:
            fields["status"] = int(status[:3])
            return start_response(status, headers, exc_info)

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
        self.metrics.requests.labels(route, str(status)).inc()
        self.metrics.latency.labels(route).observe(seconds)
        path = environ.get("PATH_INFO", "")
        if self._secret and self._secret in path:
            path = path.replace(self._secret, "***")
        line = {
            "ts": round(time.time(), 3),
            "event": "request",
            "method": environ.get("REQUEST_METHOD", ""),
            "path": path,
            "status": status,
            "duration_ms": round(seconds * 1000, 1),
            "pid": os.getpid(),  # which worker: figures per worker add up in /metrics
        }
        line.update(fields)
        self.write(json.dumps(line, ensure_ascii=False, separators=(",", ":")).encode() + b"\n")


def session_digest(runtime: Gateway, session_key: str) -> str:
    """A stable, non-reversible name for a session key (keyed with the gateway secret)."""
    secret = runtime.settings.gateway.auth.secret
    key = hashlib.sha256(b"openclaw-log\0" + secret.encode("utf-8", "surrogatepass")).digest()
    return hmac.new(key, session_key.encode(), hashlib.sha256).hexdigest()[:16]


def note_run(run: AgentRunRequest) -> None:
    """Add the run's agent, session (digest) and, with ``logging.content``, its input text."""
    fields = request.environ.get(FIELDS_KEY)
    if fields is None:
        return
    runtime = gateway()
    fields["agent"] = run.agent.id
    fields["session"] = session_digest(runtime, run.session_key)
    if runtime.settings.log_content and run.messages:
        fields["input"] = run.messages[-1].text


def note_output(text: str) -> None:
    """With ``logging.content``, add the reply text to this request's line."""
    fields = request.environ.get(FIELDS_KEY)
    if fields is not None and gateway().settings.log_content:
        fields["output"] = text


def _note_response(response: Response) -> Response:
    fields = request.environ.get(FIELDS_KEY)
    if fields is not None:
        fields["request_id"] = g.get("request_id")
        client_ip = g.get("client_ip")
        if client_ip is None:  # 404/405 answer before the hooks resolve it
            client_ip = gateway().client_ips.resolve(request.remote_addr or "", request.headers)
        fields["client_ip"] = client_ip
        fields["route"] = request.url_rule.rule if request.url_rule is not None else "other"
    return response


def register_observer(app: Flask, runtime: Gateway) -> None:
    app.after_request(_note_response)
    app.wsgi_app = RequestObserver(app.wsgi_app, runtime)  # type: ignore[method-assign]
