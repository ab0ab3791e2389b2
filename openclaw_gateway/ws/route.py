"""The WebSocket route on ``/`` (same port as HTTP) and the per-process hub of open sockets.

Werkzeug only accepts an upgrade on a rule declared ``websocket=True`` (DESIGN known fault 1).
The rule takes any method, so a plain request to ``/`` is a websocket mismatch, answered with
the same plain-text 404 as any unknown path.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

import gevent
from flask import Flask, Response, current_app, request
from werkzeug.routing import Rule
from werkzeug.routing.exceptions import WebsocketMismatch

from ..http.context import EXTENSION_KEY, client_ip
from ..http.errors import plain_response
from ..http.hooks import public
from ..runtime import Gateway
from ..server import WATCH_KEY, GatewayWebSocket
from .connection import Connection
from .handshake import Challenge, connect, hello_ok
from .methods import METHODS, Context, dispatch
from .protocol import (
    CLOSE_POLICY,
    CLOSE_RESTART,
    WsError,
    error_response,
    invalid,
    parse_request,
)
from .runs import RunRegistry

log = logging.getLogger("openclaw_gateway.ws")

HUB_KEY = "openclaw_gateway.ws"
ENDPOINT = "openclaw_ws"
SHUTDOWN_REASON = "gateway shutting down"


class Hub:
    """Open sockets, their runs and the tick timer of one process."""

    def __init__(self, runtime: Gateway) -> None:
        self.runtime = runtime
        self.connections: set[Connection] = set()
        self.runs = RunRegistry()
        self.context = Context(runtime, self.runs, lambda: len(self.connections))
        self._ticker: gevent.Greenlet | None = None

    def add(self, conn: Connection) -> None:
        self.connections.add(conn)
        if self._ticker is None:
            self._ticker = gevent.spawn(self._tick_forever)

    def discard(self, conn: Connection) -> None:
        self.connections.discard(conn)

    def _tick_forever(self) -> None:
        # One timer for every socket of the process: 2,000 sockets cost one greenlet, not 2,000.
        interval = self.runtime.settings.gateway.ws.tick_interval_ms / 1000
        while True:
            gevent.sleep(interval)
            payload = {"ts": int(time.time() * 1000)}
            for conn in list(self.connections):
                if conn.authenticated:
                    # A tick is worth nothing late: a client behind on reading just misses it.
                    conn.event("tick", payload, drop_if_slow=True)

    def drain(self) -> None:
        """Say goodbye on every socket: a ``shutdown`` event, then close 1012."""
        for conn in list(self.connections):
            if conn.authenticated:
                conn.event("shutdown", {"reason": SHUTDOWN_REASON})
            conn.close(CLOSE_RESTART, "service restart")

    def serve(self, ws: GatewayWebSocket, sock: Any, peer_ip: str) -> None:
        settings = self.runtime.settings.gateway.ws
        conn = Connection(
            ws,
            sock,
            conn_id=str(uuid.uuid4()),  # dashed, like OpenClaw's connId
            client_ip=peer_ip,
            max_buffered=settings.max_buffered_bytes,
        )
        challenge = Challenge.new()
        self.add(conn)
        try:
            # The challenge carries no seq: it precedes the connection's event stream.
            conn.send(
                {"type": "event", "event": "connect.challenge", "payload": challenge.payload()}
            )
            conn.serve(
                lambda message: self._on_message(conn, challenge, message),
                settings.handshake_timeout_ms / 1000,
            )
        finally:
            self.discard(conn)

    def _on_message(self, conn: Connection, challenge: Challenge, message: Any) -> None:
        if not conn.authenticated:
            self._handshake(conn, challenge, message)
            return
        try:
            req = parse_request(message)
        except WsError as exc:
            conn.send(error_response(exc.request_id, exc))
            return
        if req.method == "connect":
            conn.fail(req.id, invalid("already connected"))
            return
        dispatch(self.context, conn, req)

    def _handshake(self, conn: Connection, challenge: Challenge, message: Any) -> None:
        try:
            req = parse_request(message)
        except WsError as exc:
            refusal = invalid("invalid handshake: first request must be connect")
            self._refuse(conn, exc.request_id, refusal)
            return
        try:
            hello = connect(self.runtime, conn.client_ip, challenge, req)
        except WsError as exc:
            self._refuse(conn, req.id, exc)
            return
        conn.authenticated = True
        conn.role = hello.role
        conn.scopes = frozenset(hello.scopes)
        conn.ws.max_message = self.runtime.settings.gateway.ws.max_payload
        conn.respond(req.id, hello_ok(self.runtime, hello, conn.conn_id, list(METHODS)))

    def _refuse(self, conn: Connection, request_id: str, error: WsError) -> None:
        """Answer the failed ``connect``, then close (1008 unless the error names a code)."""
        conn.send(error_response(request_id, error))
        conn.close(error.close or CLOSE_POLICY, error.message[:100])


@public
def _websocket_view() -> Response | str:
    ws = request.environ.get("wsgi.websocket")
    if not isinstance(ws, GatewayWebSocket):
        # Werkzeug saw upgrade headers the server did not act on.
        return plain_response(400, "Bad Request")
    hub: Hub = current_app.extensions[HUB_KEY]
    client = request.environ.get(WATCH_KEY)
    hub.serve(ws, client.socket if client is not None else None, client_ip())
    return ""


def _not_found(exc: WebsocketMismatch) -> Response:
    return plain_response(404, "Not Found")


def register_ws(app: Flask) -> None:
    """Add the upgrade route on ``/``, its hub, and the drain listener."""
    runtime: Gateway = app.extensions[EXTENSION_KEY]
    hub = Hub(runtime)
    app.extensions[HUB_KEY] = hub
    runtime.add_drain_listener(hub.drain)
    # methods=None: any method; only an upgrade matches, everything else is a mismatch (404).
    app.url_map.add(Rule("/", endpoint=ENDPOINT, websocket=True))
    app.view_functions[ENDPOINT] = _websocket_view
    app.register_error_handler(WebsocketMismatch, _not_found)
