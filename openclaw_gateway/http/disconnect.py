"""Notice a client that went away while its run is still going, without waiting for a write."""

from __future__ import annotations

import socket
from collections.abc import Callable, Mapping
from typing import Any

import gevent
from gevent.socket import wait_read

from ..server import SOCKET_KEY


def _watch(sock: socket.socket, on_disconnect: Callable[[], None]) -> None:
    try:
        wait_read(sock.fileno())
        if sock.recv(1, socket.MSG_PEEK):
            return  # a pipelined request, not a disconnect
    except OSError:
        pass
    on_disconnect()


def watch_disconnect(
    environ: Mapping[str, Any], on_disconnect: Callable[[], None]
) -> gevent.Greenlet | None:
    """Call ``on_disconnect`` once the client closes its side; kill the result when done."""
    sock = environ.get(SOCKET_KEY)
    if sock is None:
        return None
    return gevent.spawn(_watch, sock, on_disconnect)
