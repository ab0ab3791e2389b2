"""One WebSocket connection: per-connection ``seq``, a bounded send queue and its one writer.

Every frame, close frames and pongs included, goes through ``_enqueue``; a greenlet started
on demand writes them in order, so the reader (which runs the handshake and the methods) never
writes and never blocks on a client that stopped reading. A client whose queue grows past
``max_buffered`` bytes is a slow consumer: its queue is dropped and it is closed with 1008.
"""

from __future__ import annotations

import logging
import socket
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import gevent
from gevent.pool import Group
from geventwebsocket.exceptions import WebSocketError
from geventwebsocket.websocket import Header

from ..server import GatewayWebSocket
from .protocol import CLOSE_POLICY, WsError, encode, error_response, response

log = logging.getLogger("openclaw_gateway.ws")

OPCODE_TEXT = 0x01
OPCODE_CLOSE = 0x08
OPCODE_PONG = 0x0A
# After our close frame is out, how long the peer has to answer with its own.
CLOSE_REPLY_SECONDS = 2.0
# How long a close frame may wait behind a client that does not read.
CLOSE_WRITE_SECONDS = 10.0


def now_ms() -> int:
    return int(time.time() * 1000)


class Connection:
    """A socket's state and its writer. Greenlet-confined: no locks needed."""

    def __init__(
        self,
        ws: GatewayWebSocket,
        sock: socket.socket | None,
        *,
        conn_id: str,
        client_ip: str,
        max_buffered: int,
    ) -> None:
        self.ws = ws
        self.sock = sock
        self.conn_id = conn_id
        self.client_ip = client_ip
        self.max_buffered = max_buffered
        self.seq = 0
        self.authenticated = False
        self.role = ""
        self.scopes: frozenset[str] = frozenset()
        self.closing = False
        self.close_code: int | None = None
        self.close_sent = False
        self._queue: deque[tuple[int, bytes]] = deque()
        self._buffered = 0
        self._writer: gevent.Greenlet | None = None
        self._reaper: gevent.Greenlet | None = None
        # Waits on this socket's behalf (agent.wait): pointless once it is gone.
        self._waits = Group()
        ws.on_ping = lambda payload: self._enqueue(OPCODE_PONG, bytes(payload), control=True)

    # -- sending ----------------------------------------------------------------------------

    @property
    def buffered(self) -> int:
        return self._buffered

    def send(self, frame: dict[str, Any], *, drop_if_slow: bool = False) -> bool:
        """Queue one JSON frame; False when it was not queued (closing, or dropped)."""
        if self.closing:
            return False
        return self._enqueue(OPCODE_TEXT, encode(frame).encode("utf-8"), drop_if_slow=drop_if_slow)

    def event(self, name: str, payload: Any, *, drop_if_slow: bool = False) -> bool:
        if self.closing:
            return False
        frame = {"type": "event", "event": name, "payload": payload, "seq": self.seq + 1}
        # A dropped event takes no seq: clients read a gap in seq as lost events.
        if not self.send(frame, drop_if_slow=drop_if_slow):
            return False
        self.seq += 1
        return True

    def respond(self, request_id: str, payload: Any) -> None:
        self.send(response(request_id, payload))

    def fail(self, request_id: str, error: WsError, payload: Any = None) -> None:
        self.send(error_response(request_id, error, payload))

    def _enqueue(
        self, opcode: int, data: bytes, *, drop_if_slow: bool = False, control: bool = False
    ) -> bool:
        if self.closing and not control:
            return False
        if not control and self._buffered + len(data) > self.max_buffered:
            if drop_if_slow:
                return False
            log.info("closing slow consumer %s (%d bytes queued)", self.conn_id, self._buffered)
            self.close(CLOSE_POLICY, "slow consumer", flush=False)
            return False
        self._queue.append((opcode, data))
        self._buffered += len(data)
        if self._writer is None:
            self._writer = gevent.spawn(self._write_queued)
        return True

    def _write_queued(self) -> None:
        try:
            while self._queue:
                opcode, data = self._queue.popleft()
                self._buffered -= len(data)
                header = Header.encode_header(True, opcode, b"", len(data), 0)
                write = self.ws.raw_write
                if write is None:
                    return
                write(bytes(header) + data)
                if opcode == OPCODE_CLOSE:
                    self._queue.clear()
                    self._buffered = 0
                    self.close_sent = True
                    self._schedule_shutdown(CLOSE_REPLY_SECONDS)
                    return
        except (OSError, WebSocketError):
            self._queue.clear()
            self._buffered = 0
            self.closing = True
            self.shutdown()
        finally:
            self._writer = None

    def spawn(self, wait: Callable[..., None], *args: Any) -> None:
        """Run ``wait`` in a greenlet that ends with the connection (it only answers this socket)."""
        self._waits.spawn(wait, *args)

    # -- closing ----------------------------------------------------------------------------

    def close(self, code: int, reason: str = "", *, flush: bool = True) -> None:
        """Send a close frame with ``code`` after what is queued (or instead of it)."""
        if self.closing:
            return
        self.closing = True
        self.close_code = code
        if not flush:
            self._queue.clear()
            self._buffered = 0
        self._enqueue(OPCODE_CLOSE, self.ws.close_frame(code, reason), control=True)
        self._schedule_shutdown(CLOSE_WRITE_SECONDS)

    def _schedule_shutdown(self, seconds: float) -> None:
        if self._reaper is not None:
            self._reaper.kill(block=False)
        self._reaper = gevent.spawn_later(seconds, self.shutdown)

    def shutdown(self) -> None:
        """Cut the TCP connection: the reader's ``receive`` returns, a blocked writer fails."""
        if self.sock is None:
            return
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def finish(self) -> None:
        """Wait for the writer to flush (bounded), then leave the socket to the server."""
        writer = self._writer
        if writer is not None:
            writer.join(timeout=CLOSE_WRITE_SECONDS)
            if not writer.dead:
                self.shutdown()
                writer.kill(block=True, timeout=1)
        if self.close_sent and self.ws.peer_close_code is None:
            self._drain_input()
        if self._reaper is not None:
            self._reaper.kill(block=False)
        self._waits.kill(block=False)
        self.closing = True
        # The handler would otherwise send a second close frame (1000) after ours.
        self.ws.closed = True

    def _drain_input(self) -> None:
        """Read and drop what the peer still sends until it closes (bounded in time).

        Closing a socket with unread input makes the kernel send RST, which can destroy our
        close frame before the client reads it (e.g. after refusing an oversized frame)."""
        if self.sock is None:
            return
        try:
            self.sock.shutdown(socket.SHUT_WR)
            with gevent.Timeout(CLOSE_REPLY_SECONDS, False):
                while self.sock.recv(65536):
                    pass
        except OSError:
            pass

    def serve(self, handle: Callable[[Any], None], first_timeout: float | None) -> None:
        """Read messages until the socket closes; ``handle`` gets each one.

        The first read is bounded by ``first_timeout`` (the handshake deadline)."""
        try:
            timeout = first_timeout
            while not self.closing:
                if timeout is not None:
                    message = self._receive_within(timeout)
                    timeout = None
                else:
                    message = self.ws.receive()
                if message is None:
                    if not self.closing and self.ws.close_code is not None:
                        self.close(self.ws.close_code, self.ws.close_reason)
                    break
                handle(message)
        finally:
            self.finish()

    def _receive_within(self, seconds: float) -> Any:
        try:
            with gevent.Timeout(seconds):
                return self.ws.receive()
        except gevent.Timeout:
            self.close(CLOSE_POLICY, "handshake timeout")
            return None
