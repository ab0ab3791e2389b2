"""The server layer: the gunicorn worker and the development server, with the stack's fixes.

Known faults fixed here (DESIGN.md): gunicorn's access log under gevent-websocket (2), the
dev server's missing TCP_NODELAY (5), and the client socket exposed to the app so a run notices a
client that left (6). Nothing from the app is imported here: gunicorn's master loads this module.
"""

from __future__ import annotations

import http.client
import socket
from typing import Any

from geventwebsocket.gunicorn.workers import GeventWebSocketWorker
from geventwebsocket.handler import WebSocketHandler
from gunicorn.workers.ggevent import PyWSGIHandler

SOCKET_KEY = "openclaw.socket"


class _SocketInEnviron:
    socket: Any

    def get_environ(self) -> dict[str, Any]:
        environ = super().get_environ()  # type: ignore[misc]
        environ[SOCKET_KEY] = self.socket
        return environ  # type: ignore[no-any-return]


class _OneLineClientErrors:
    def _handle_client_error(self, ex: BaseException) -> Any:
        # pywsgi prints a full traceback for header errors that are not ValueErrors (http.client's
        # "got more than 100 headers", "header line too long"): every such request would put ~20
        # lines in the log. A client's bad request deserves the one line the others get.
        if isinstance(ex, http.client.HTTPException) and not isinstance(ex, ValueError):
            ex = ValueError(str(ex) or type(ex).__name__)
        return super()._handle_client_error(ex)  # type: ignore[misc]


class GatewayHandler(_OneLineClientErrors, _SocketInEnviron, PyWSGIHandler, WebSocketHandler):
    """gunicorn's handler first in the MRO (access log), then gevent-websocket's upgrade."""


class DevHandler(_OneLineClientErrors, _SocketInEnviron, WebSocketHandler):
    """The development server's handler."""


class GatewayWorker(GeventWebSocketWorker):
    wsgi_handler = GatewayHandler


def dev_listener(host: str, port: int) -> socket.socket:
    """A listening socket with TCP_NODELAY set (accepted sockets inherit it)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.listen(1024)
    return sock
