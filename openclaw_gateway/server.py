"""The server layer: the gunicorn worker and the development server, with the stack's fixes.

Known faults fixed here (DESIGN.md): gunicorn's access log under gevent-websocket (2), the
dev server's missing TCP_NODELAY (5), and the client socket exposed to the app so a run notices a
client that left (6). Nothing from the app is imported here: gunicorn's master loads this module.
"""

from __future__ import annotations

import socket
import time
from functools import partial
from typing import Any

import gevent
from geventwebsocket.gunicorn.workers import GeventWebSocketWorker
from geventwebsocket.handler import WebSocketHandler
from gunicorn.workers.ggevent import PyWSGIHandler, PyWSGIServer

SOCKET_KEY = "openclaw.socket"
# The attribute of the WSGI app the worker calls on SIGTERM (the app sets it to the runtime's
# ``start_drain``): the worker never imports the app, it only looks for this hook.
DRAIN_HOOK = "openclaw_start_drain"


class _SocketInEnviron:
    socket: Any

    def get_environ(self) -> dict[str, Any]:
        environ = super().get_environ()  # type: ignore[misc]
        environ[SOCKET_KEY] = self.socket
        return environ  # type: ignore[no-any-return]


class _Drain:
    """One worker's drain state: its servers, and the connections waiting for a request line."""

    def __init__(self) -> None:
        self.draining = False
        self.servers: list[GatewayServer] = []
        self.waiting: set[_DrainAware] = set()

    def in_flight(self) -> int:
        """Connections with a request being read or answered (a stream, a socket)."""
        return sum(len(server.pool) for server in self.servers) - len(self.waiting)

    def close_idle(self, include_new: bool = False) -> None:
        """Close connections waiting for a request: they would hold the worker until
        graceful_timeout. Keep-alives go at once; new ones only at the end (their request may
        be on its way)."""
        for handler in list(self.waiting):
            if include_new or handler.served:
                handler.hang_up()


class GatewayServer(PyWSGIServer):  # type: ignore[misc]
    def __init__(self, *args: Any, drain: _Drain, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.drain = drain
        drain.servers.append(self)


class _DrainAware:
    """While the worker drains: answer with ``Connection: close`` and end idle keep-alives."""

    server: Any
    socket: Any
    served = False  # a request came on this connection before: waiting now is keep-alive

    def read_requestline(self) -> str:
        drain: _Drain | None = getattr(self.server, "drain", None)
        if drain is None:
            return super().read_requestline()  # type: ignore[misc,no-any-return]
        if drain.draining and self.served:
            return ""  # a keep-alive connection after its last response: close it
        drain.waiting.add(self)
        try:
            return super().read_requestline()  # type: ignore[misc,no-any-return]
        finally:
            drain.waiting.discard(self)
            self.served = True

    def hang_up(self) -> None:
        try:
            self.socket.shutdown(socket.SHUT_RDWR)
        except (OSError, AttributeError):
            pass  # already gone

    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Any:
        drain: _Drain | None = getattr(self.server, "drain", None)
        draining = drain is not None and drain.draining
        # pywsgi closes after this response without saying so on HTTP/1.1 (when the client
        # asked for close, or we drain); a client that is not told may reuse the dead socket.
        if (draining or getattr(self, "close_connection", False)) and not status.startswith("101"):
            headers = [(k, v) for k, v in headers if k.lower() != "connection"]
            headers.append(("Connection", "close"))
            self.close_connection = True
        return super().start_response(status, headers, exc_info)  # type: ignore[misc]


class GatewayHandler(_DrainAware, _SocketInEnviron, PyWSGIHandler, WebSocketHandler):
    """gunicorn's handler first in the MRO (access log), then gevent-websocket's upgrade."""


class DevHandler(_SocketInEnviron, WebSocketHandler):
    """The development server's handler."""


class GatewayWorker(GeventWebSocketWorker):
    """gevent-websocket's worker with the fixes above, and a drain on SIGTERM (fault 12)."""

    wsgi_handler = GatewayHandler

    def init_process(self) -> None:
        self.drain = _Drain()
        self.server_class = partial(GatewayServer, drain=self.drain)
        super().init_process()

    def handle_exit(self, sig: int, frame: Any) -> None:
        # SIGTERM: drain first instead of gunicorn's "stop accepting, wait, kill".
        gevent.spawn(self.start_drain)

    def start_drain(self) -> None:
        """Tell the app (readiness 503, new runs 503, streams get their deadline), close idle
        keep-alives, keep serving until the open requests end, then let gunicorn stop the worker.

        The listener stays open meanwhile so probes see the 503 and late clients get a clean
        refusal with ``Connection: close`` rather than a refused connection.
        """
        if self.drain.draining:
            return
        self.drain.draining = True
        hook = getattr(self.wsgi, DRAIN_HOOK, None)
        if hook is not None:
            hook()
        self.drain.close_idle()
        # Leave gunicorn's own stop a moment before the master's SIGKILL at graceful_timeout.
        deadline = time.monotonic() + max(self.cfg.graceful_timeout - 2, 0)
        while self.drain.in_flight() > 0 and time.monotonic() < deadline:
            gevent.sleep(0.1)
        self.drain.close_idle(include_new=True)
        self.alive = False


def dev_listener(host: str, port: int) -> socket.socket:
    """A listening socket with TCP_NODELAY set (accepted sockets inherit it)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.listen(1024)
    return sock
