"""Notice a client that went away while its run is still going, without waiting for a write."""

from __future__ import annotations

import socket
from collections.abc import Callable, Mapping
from typing import Any

import gevent

from ..server import SOCKET_KEY

_PEEK = socket.MSG_PEEK | socket.MSG_DONTWAIT


class DisconnectWatch:
    """A libev read watcher on the client socket: no greenlet per request (spawning one and
    killing it again cost about as much as the rest of the request's bookkeeping)."""

    __slots__ = ("_sock", "_watcher", "_on_disconnect")

    def __init__(self, sock: socket.socket, on_disconnect: Callable[[], None]) -> None:
        # gevent's socket would wait (switch) on EAGAIN, which the hub may not do: peek raw.
        self._sock = getattr(sock, "_sock", sock)
        self._on_disconnect = on_disconnect
        self._watcher = gevent.get_hub().loop.io(sock.fileno(), 1)
        self._watcher.start(self._readable)

    def _readable(self) -> None:
        try:
            if self._sock.recv(1, _PEEK):
                self.stop()  # a pipelined request, not a disconnect
                return
        except BlockingIOError:
            return  # woken without data: keep watching
        except OSError:
            pass
        self.stop()
        # In a greenlet of its own, as before: the callback may take locks or switch.
        gevent.spawn(self._on_disconnect)

    def stop(self) -> None:
        """Stop watching (the run is over); safe to call more than once."""
        watcher = self._watcher
        if watcher is not None:
            self._watcher = None
            watcher.stop()
            watcher.close()


def watch_disconnect(
    environ: Mapping[str, Any], on_disconnect: Callable[[], None]
) -> DisconnectWatch | None:
    """Call ``on_disconnect`` once the client closes its side; stop the result when done."""
    sock = environ.get(SOCKET_KEY)
    if sock is None:
        return None
    return DisconnectWatch(sock, on_disconnect)
