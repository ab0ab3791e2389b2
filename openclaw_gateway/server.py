"""The server layer: the gunicorn worker and the development server, with the stack's fixes.

Known faults fixed here (DESIGN.md): gunicorn's access log under gevent-websocket (2), close
codes that gevent-websocket drops (3), its missing frame-size limit and byte-by-byte unmasking (4),
the dev server's missing TCP_NODELAY (5), and the client socket exposed to the app so a run
notices a client that left (6). Nothing from the app is imported here: gunicorn's master loads
this module.
"""

from __future__ import annotations

import gc
import http.client
import socket
import struct
import time
from functools import partial
from typing import Any

import gevent
from geventwebsocket.exceptions import ProtocolError, WebSocketError
from geventwebsocket.gunicorn.workers import GeventWebSocketWorker
from geventwebsocket.handler import WebSocketHandler
from geventwebsocket.websocket import Header, Stream, WebSocket
from gunicorn.workers.ggevent import PyWSGIHandler, PyWSGIServer

# The connection's ``ClientWatch``: its socket, and a disconnect watch (one per connection, its
# libev watcher made on first use). One environ key: a held stream's environ is one of the
# dicts that crossed a size step with a second key (~1.2 KB more per stream, measured).
WATCH_KEY = "openclaw.client"
# The attribute of the WSGI app the worker calls on SIGTERM (the app sets it to the runtime's
# ``start_drain``): the worker never imports the app, it only looks for this hook.
DRAIN_HOOK = "openclaw_start_drain"
# Until the app raises it (after auth), no message may be larger than this.
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024
# The buffer a connection's request line, headers and body are read through (pywsgi's is
# 8 KiB). A read larger than the buffer goes straight into place, and once a stream or a
# socket is going the buffer sits idle for as long as the connection lives.
CLIENT_READ_BUFFER = 1024


class MessageTooBig(ProtocolError):
    """A frame (or a fragmented message) over the socket's ``max_message`` limit."""


def unmask(payload: bytes, mask: bytes) -> bytes:
    """XOR with the 4-byte mask in C-speed integer arithmetic (the library loops per byte)."""
    length = len(payload)
    if not length:
        return payload
    key = (mask * (length // 4 + 1))[:length]
    value = int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")
    return value.to_bytes(length, "little")


class GatewayWebSocket(WebSocket):
    """gevent-websocket's socket with real close codes, a message cap and fast unmasking.

    ``receive`` never writes: a protocol fault or the peer's close frame is recorded in
    ``close_code``/``close_reason`` and ``None`` returned, so the owner of the socket (the one
    greenlet that writes) sends the close frame. Writing from the reader too would race it.
    """

    closed: bool

    def __init__(self, environ: dict[str, Any], stream: Any, handler: Any) -> None:
        super().__init__(environ, stream, handler)
        self.max_message = DEFAULT_MAX_MESSAGE_BYTES
        self.close_code: int | None = None
        self.close_reason = ""
        self.peer_close_code: int | None = None
        # Set by the socket's owner so pongs go through its one writer.
        self.on_ping: Any = None

    def read_frame(self) -> tuple[Header, bytes]:
        header = Header.decode_header(self.stream)
        if header.flags:
            raise ProtocolError("reserved bits set")
        # Refuse before reading: the payload of a huge frame is never buffered or unmasked.
        if header.length > self.max_message:
            raise MessageTooBig(f"frame of {header.length} bytes")
        if not header.length:
            return header, b""
        payload = self.raw_read(header.length)
        if len(payload) != header.length:
            raise WebSocketError("Unexpected EOF reading frame payload")
        if header.mask:
            payload = unmask(payload, header.mask)
        return header, payload

    def read_message(self) -> Any:
        opcode = None
        message = bytearray()
        while True:
            header, payload = self.read_frame()
            if header.opcode in (self.OPCODE_TEXT, self.OPCODE_BINARY):
                if opcode:
                    raise ProtocolError("a new message inside a fragmented one")
                opcode = header.opcode
            elif header.opcode == self.OPCODE_CONTINUATION:
                if not opcode:
                    raise ProtocolError("continuation without a message")
            elif header.opcode == self.OPCODE_PING:
                if self.on_ping is not None:
                    self.on_ping(payload)
                else:
                    self.send_frame(payload, self.OPCODE_PONG)
                continue
            elif header.opcode == self.OPCODE_PONG:
                continue
            elif header.opcode == self.OPCODE_CLOSE:
                self._peer_closed(payload)
                return None
            else:
                raise ProtocolError(f"unexpected opcode {header.opcode}")
            message += payload
            if len(message) > self.max_message:
                raise MessageTooBig(f"message of {len(message)} bytes")
            if header.fin:
                break
        if opcode == self.OPCODE_TEXT:
            return message.decode("utf-8")
        return bytes(message)

    def _peer_closed(self, payload: bytes) -> None:
        code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1000
        self.peer_close_code = code
        # Echo a valid code back (RFC 6455 5.5.1); anything odd becomes a protocol error. The
        # library's check lets 5000 and above through, which RFC 6455 7.4.2 does not allow.
        valid = self._is_valid_close_code(code) and code < 5000
        self._fault(code if valid else 1002, "")

    def _fault(self, code: int, reason: str) -> None:
        if self.close_code is None:
            self.close_code, self.close_reason = code, reason

    def receive(self) -> Any:
        """The next message, or ``None`` once the socket is done (see ``close_code``)."""
        if self.closed:
            return None
        try:
            return self.read_message()
        except MessageTooBig:
            self._fault(1009, "message too big")
        except UnicodeError:
            self._fault(1007, "invalid utf-8")
        except ProtocolError:
            self._fault(1002, "protocol error")
        except OSError:
            pass  # the peer went away: nobody to send a close frame to
        return None

    def close_frame(self, code: int = 1000, reason: str = "") -> bytes:
        """The close frame's payload: the 2-byte code, then at most 123 bytes of reason."""
        return struct.pack("!H", code) + reason.encode("utf-8")[:123]

    def close(self, code: int = 1000, message: Any = b"") -> None:
        """Send a close frame that carries ``code`` (the library sends none), then mark closed."""
        if self.closed:
            return
        reason = message.decode("utf-8", "replace") if isinstance(message, bytes) else message
        try:
            self.send_frame(self.close_frame(code, reason or ""), self.OPCODE_CLOSE)
        except (OSError, WebSocketError):
            pass  # the peer is gone; closing anyway
        finally:
            self.closed = True


class _GatewayUpgrade:
    """Hand the app a ``GatewayWebSocket`` instead of the library's ``WebSocket``."""

    environ: dict[str, Any]

    def upgrade_connection(self) -> Any:
        result = super().upgrade_connection()  # type: ignore[misc]
        websocket = self.environ.get("wsgi.websocket")
        if websocket is not None and not isinstance(websocket, GatewayWebSocket):
            # Its __del__ sends a close frame unless it believes it is closed already.
            websocket.closed = True
            websocket = GatewayWebSocket(self.environ, Stream(self), self)
            self.websocket = websocket
            self.environ["wsgi.websocket"] = websocket
        return result


class _SmallReadBuffer:
    """Read the connection through ``CLIENT_READ_BUFFER`` (pywsgi's ``rfile`` argument is
    undocumented but there since gevent 1.0; gevent is pinned)."""

    def __init__(self, sock: Any, address: Any, server: Any, rfile: Any = None) -> None:
        if rfile is None:
            rfile = sock.makefile("rb", CLIENT_READ_BUFFER)
        super().__init__(sock, address, server, rfile)  # type: ignore[call-arg]


_PEEK = socket.MSG_PEEK | socket.MSG_DONTWAIT


class ClientWatch:
    """Notice a client that goes away while its request runs, without waiting for a write.

    A libev read watcher on the connection's socket, not a greenlet per request (spawning one
    and killing it again cost about as much as the rest of the request's bookkeeping). Made
    once per connection (on the first request that asks) and started for each request that
    asks: a keep-alive connection's requests share it.
    """

    __slots__ = ("socket", "_sock", "_watcher", "_on_disconnect")

    def __init__(self, sock: socket.socket) -> None:
        self.socket = sock
        # gevent's socket would wait (switch) on EAGAIN, which the hub may not do: peek raw.
        self._sock = getattr(sock, "_sock", sock)
        self._watcher: Any = None
        self._on_disconnect: Any = None

    def start(self, on_disconnect: Any) -> None:
        """Call ``on_disconnect`` (in a greenlet of its own) once the client closes its side."""
        if self._watcher is None:
            self._watcher = gevent.get_hub().loop.io(self._sock.fileno(), 1)
        self._on_disconnect = on_disconnect
        self._watcher.start(self._readable)

    def stop(self) -> None:
        """Stop watching (the request is over); safe to call more than once."""
        self._on_disconnect = None
        if self._watcher is not None:
            self._watcher.stop()

    def close(self) -> None:
        watcher, self._watcher = self._watcher, None
        self._on_disconnect = None
        if watcher is not None:
            watcher.stop()
            watcher.close()

    def _readable(self) -> None:
        try:
            if self._sock.recv(1, _PEEK):
                self.stop()  # a pipelined request, not a disconnect
                return
        except BlockingIOError:
            return  # woken without data: keep watching
        except OSError:
            pass
        callback = self._on_disconnect
        self.stop()
        if callback is not None:
            # In a greenlet of its own: the callback may take locks or switch.
            gevent.spawn(callback)


class _SocketInEnviron:
    # A slot, not an instance attribute: one more key in the handler's __dict__ made it grow a
    # size step (~1.5 KB more per held stream, measured).
    __slots__ = ("_client_watch",)
    socket: Any

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._client_watch: ClientWatch | None = None
        super().__init__(*args, **kwargs)

    def get_environ(self) -> dict[str, Any]:
        environ = super().get_environ()  # type: ignore[misc]
        watch = self._client_watch
        if watch is None:
            watch = self._client_watch = ClientWatch(self.socket)
        environ[WATCH_KEY] = watch
        return environ  # type: ignore[no-any-return]

    def handle(self) -> None:
        try:
            super().handle()  # type: ignore[misc]
        finally:
            watch, self._client_watch = self._client_watch, None
            if watch is not None:
                watch.close()


class _OneLineClientErrors:
    def _handle_client_error(self, ex: BaseException) -> Any:
        # pywsgi prints a full traceback for header errors that are not ValueErrors (http.client's
        # "got more than 100 headers", "header line too long"): every such request would put ~20
        # lines in the log. A client's bad request deserves the one line the others get.
        if isinstance(ex, http.client.HTTPException) and not isinstance(ex, ValueError):
            ex = ValueError(str(ex) or type(ex).__name__)
        return super()._handle_client_error(ex)  # type: ignore[misc]


class _Drain:
    """One worker's drain state: its servers, and the connections waiting for a request line."""

    def __init__(self) -> None:
        self.draining = False
        # The last phase: the worker is about to stop; no new request is read any more.
        self.final = False
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
        if drain.draining and (self.served or drain.final):
            return ""  # a keep-alive after its last response, or too late: close it
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


class GatewayHandler(
    _OneLineClientErrors,
    _DrainAware,
    _SmallReadBuffer,
    _SocketInEnviron,
    _GatewayUpgrade,
    PyWSGIHandler,
    WebSocketHandler,
):
    """gunicorn's handler first in the MRO (access log), then gevent-websocket's upgrade."""


class DevHandler(
    _OneLineClientErrors, _SmallReadBuffer, _SocketInEnviron, _GatewayUpgrade, WebSocketHandler
):
    """The development server's handler."""


class GatewayWorker(GeventWebSocketWorker):
    """gevent-websocket's worker with the fixes above, and a drain on SIGTERM (fault 12)."""

    wsgi_handler = GatewayHandler

    def init_process(self) -> None:
        # No spawning stack and spawn-tree locals captured per greenlet (a debugging aid of
        # gevent's, on by default): ~0.5 KB for each connection held open.
        gevent.config.track_greenlet_tree = False
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
        # Stop accepting here: a connection accepted in gunicorn's last second would otherwise
        # hold the worker until graceful_timeout.
        self.drain.final = True
        for server in self.drain.servers:
            server.close()
        self.drain.close_idle(include_new=True)
        self.alive = False


# Container objects allocated (net of those freed) between two young-generation collections;
# CPython's default is 700.
YOUNG_COLLECTION_THRESHOLD = 7000


def freeze_startup_heap() -> None:
    """Keep what start-up built (modules, config, the app) out of every later collection, and
    collect the young generation a tenth as often.

    A worker holds ~50 MB of long-lived objects; each full collection walked all of them, and
    the allocations of a few hundred requests trigger one: ~60K instructions per request,
    measured. ``gc.freeze`` moves them to a generation the collector never scans (what is
    garbage at that point is collected first). Call once per process, after the app is built.

    A request leaves no reference cycles (``tests/test_cyclic_garbage.py``), so a young
    collection finds next to nothing; what it costs is a walk over every live object of every
    request in flight. With 100 clients on one worker they came every ~85 requests at the
    default threshold (~11 us per request); at 7000, every ~5000 (measured with
    ``gc.callbacks`` under ``wrk``). The price is that a cycle some rare path makes waits
    longer to be freed: a few thousand objects at most.
    """
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, older, oldest)


def dev_listener(host: str, port: int) -> socket.socket:
    """A listening socket with TCP_NODELAY set (accepted sockets inherit it)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.listen(1024)
    return sock
