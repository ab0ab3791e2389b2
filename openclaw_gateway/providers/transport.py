"""What every HTTP provider shares: the process's connection pool, body reading, cancellation."""

from __future__ import annotations

import email.parser
import http.client
import itertools
import json
import re
import select
from collections.abc import Callable, Generator, Iterator
from typing import Any

import gevent
import gevent.monkey
import urllib3
from sseclient import Event, SSEClient
from urllib3 import Retry
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
)
from urllib3.util import parse_url

from ..agent.errors import (
    RunCancelled,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from ..agent.types import CancelToken, ProviderEvent

# Turns the upstream's SSE events into provider events; returns True once the stream ended
# properly (``[DONE]``, ``message_stop``), so an early end is an error, not a short reply.
SseReader = Callable[[Iterator[Event]], Generator[ProviderEvent, None, bool]]
JsonReader = Callable[[bytes], Iterator[ProviderEvent]]

ERROR_BODY_LIMIT = 64 * 1024
# Passed to every request: ``retries=False`` would build a Retry object per request, and the
# response keeps it for as long as the body is read (the whole stream). Retry is immutable.
_NO_RETRIES = Retry(total=False, redirect=False)


# The buffer http.client reads an upstream response through (its default is 8 KiB). SSE
# events are a few hundred bytes and a body larger than the buffer is read straight into
# place, so 1 KiB costs a burst of events a few more recv calls, while every held stream
# keeps its buffer for as long as it is open.
UPSTREAM_READ_BUFFER = 1024


class _ReadBufferSize:
    """The socket as ``http.client.HTTPResponse`` sees it: its ``makefile`` sets the buffer."""

    __slots__ = ("_sock",)

    def __init__(self, sock: Any) -> None:
        self._sock = sock

    def makefile(self, mode: str) -> Any:
        return self._sock.makefile(mode, UPSTREAM_READ_BUFFER)


# A header line the fast parse takes as is: a token, a colon, a value, no folding. Anything
# else (obsolete line folding, odd names) goes to the stdlib's email parser, as before.
_PLAIN_HEADER = re.compile(rb"[!-9;-~]+:[^\r\n]*\r?\n\Z")
# http.client's limits on a response's header lines.
MAX_HEADER_LINE = 65536
MAX_HEADERS = 100


def _header_lines(fp: Any) -> list[bytes]:
    """The header lines up to and including the blank one, within http.client's limits."""
    lines = []
    while True:
        line = fp.readline(MAX_HEADER_LINE + 1)
        if len(line) > MAX_HEADER_LINE:
            raise http.client.LineTooLong("header line")
        lines.append(line)
        if len(lines) > MAX_HEADERS:
            raise http.client.HTTPException(f"got more than {MAX_HEADERS} headers")
        if line in (b"\r\n", b"\n", b""):
            return lines


def read_headers(fp: Any) -> http.client.HTTPMessage:
    """The response headers as ``http.client.parse_headers`` returns them, ~4x cheaper.

    The stdlib runs every response's headers through the ``email`` package's feed parser
    (~18 us for three headers, ~60 us for a real provider's twenty); plain ``Name: value``
    lines need a split each.
    """
    lines = _header_lines(fp)
    message = http.client.HTTPMessage()
    for line in lines:
        if line in (b"\r\n", b"\n", b""):
            break
        if _PLAIN_HEADER.match(line) is None:
            text = b"".join(lines).decode("iso-8859-1")
            return email.parser.Parser(_class=http.client.HTTPMessage).parsestr(text)  # type: ignore[return-value]
        name, _, value = line.decode("iso-8859-1").partition(":")
        message[name] = value.lstrip(" \t").rstrip("\r\n")
    return message


class _UpstreamResponse(http.client.HTTPResponse):
    """http.client's response read through ``UPSTREAM_READ_BUFFER``, headers by ``read_headers``.

    ``begin`` does what the stdlib's (3.11) does, but for the header parse.
    """

    def __init__(self, sock: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(_ReadBufferSize(sock), *args, **kwargs)  # type: ignore[arg-type]

    def begin(self) -> None:
        if self.headers is not None:
            return
        while True:
            version, status, reason = self._read_status()  # type: ignore[attr-defined]
            if status != http.client.CONTINUE:
                break
            _header_lines(self.fp)  # a 100 Continue's headers
        self.code = self.status = status
        self.reason = reason.strip()
        if version in ("HTTP/1.0", "HTTP/0.9"):
            self.version = 10
        elif version.startswith("HTTP/1."):
            self.version = 11
        else:
            raise http.client.UnknownProtocol(version)
        self.headers = self.msg = read_headers(self.fp)
        transfer_encoding = self.headers.get("transfer-encoding")
        if transfer_encoding and transfer_encoding.lower() == "chunked":
            self.chunked = True
            self.chunk_left = None
        else:
            self.chunked = False
        self.will_close = self._check_close()  # type: ignore[attr-defined]
        self.length = None
        length = self.headers.get("content-length")
        if length and not self.chunked:
            try:
                self.length = int(length)
            except ValueError:
                self.length = None
            else:
                if self.length < 0:
                    self.length = None
        if status in (http.client.NO_CONTENT, http.client.NOT_MODIFIED) or 100 <= status < 200:
            self.length = 0
        if self._method == "HEAD":  # type: ignore[attr-defined]
            self.length = 0
        if not self.will_close and not self.chunked and self.length is None:
            self.will_close = True


def _without_parsed_copy(response: urllib3.HTTPResponse) -> urllib3.HTTPResponse:
    """Drop http.client's parse of the response headers once urllib3 has copied them.

    urllib3 reads them from ``response.headers``; http.client's copy (an email ``Message``, a
    few KB for a real provider's twenty-odd headers) would stay as long as the body is read.
    """
    original = getattr(response, "_original_response", None)
    if original is not None:
        original.msg = original.headers = None
    return response


# The unpatched poll: a zero-timeout check is one syscall, where gevent's poll starts a watcher,
# switches to the hub for a loop iteration and is woken by a Timeout thrown into the greenlet.
_poll = gevent.monkey.get_original("select", "poll")


def _is_connected(connection: HTTPConnection) -> bool:
    """urllib3's check before it reuses a pooled connection, without a trip through the hub:
    a socket that is readable while idle (EOF, or bytes nobody asked for) is dropped."""
    sock = connection.sock
    if sock is None:
        return False
    poller = _poll()
    poller.register(sock.fileno(), select.POLLIN)
    return not poller.poll(0)


# A request whose head and body together are at most this big leaves in one send.
ONE_SEND_LIMIT = 64 * 1024


class _GatewayConnection:
    """What the gateway's upstream connections do beyond urllib3's: the dropped-connection
    check above, http.client's parsed copy of the headers dropped, and the request's head and
    body sent together (http.client sends the head, then the body: two sends and two trips
    through gevent's ``sendall`` where one does)."""

    _hold = False
    _head: bytes | None = None

    is_connected = property(_is_connected)

    def getresponse(self) -> urllib3.HTTPResponse:
        return _without_parsed_copy(super().getresponse())  # type: ignore[misc]

    def request(self, *args: Any, **kwargs: Any) -> None:
        self._hold = True
        try:
            super().request(*args, **kwargs)  # type: ignore[misc]
        finally:
            head, self._head, self._hold = self._head, None, False
        if head is not None:  # a request without a body
            super().send(head)  # type: ignore[misc]

    def send(self, data: Any) -> None:
        if self._hold:
            if self._head is None and isinstance(data, bytes):
                self._head = data  # the head, from endheaders(): wait for the body
                return
            head, self._head, self._hold = self._head, None, False
            if head is not None:
                if isinstance(data, bytes) and len(head) + len(data) <= ONE_SEND_LIMIT:
                    data = head + data
                else:
                    super().send(head)  # type: ignore[misc]
        super().send(data)  # type: ignore[misc]


class _HTTPConnection(_GatewayConnection, HTTPConnection):  # type: ignore[misc]  # as urllib3
    response_class = _UpstreamResponse


class _HTTPSConnection(_GatewayConnection, HTTPSConnection):  # type: ignore[misc]  # as urllib3
    response_class = _UpstreamResponse


class _HTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


def new_pool(maxsize: int = 256) -> urllib3.PoolManager:
    """One pool per process: non-blocking (a burst opens extra connections), retries off,
    responses read through ``UPSTREAM_READ_BUFFER``."""
    pool = urllib3.PoolManager(num_pools=32, maxsize=maxsize, block=False, retries=False)
    pool.pool_classes_by_scheme = {"http": _HTTPConnectionPool, "https": _HTTPSConnectionPool}
    return pool


class Endpoint:
    """One upstream URL on the process's pool.

    ``PoolManager.urlopen`` parses the URL and builds a pool key on every request; the host's
    connection pool is looked up here once instead (and again only if it was closed). Pools
    the manager drops from its table are not closed, so the endpoint's stays usable.
    """

    __slots__ = ("manager", "url", "path", "_pool")

    def __init__(self, manager: urllib3.PoolManager, url: str) -> None:
        self.manager = manager
        self.url = url
        self.path = parse_url(url).request_uri
        self._pool: HTTPConnectionPool | None = None

    def pool(self) -> HTTPConnectionPool:
        pool = self._pool
        if pool is None or pool.pool is None:
            pool = self._pool = self.manager.connection_from_url(self.url)
        return pool


class _Quiet:
    """A logger that drops sseclient-py's two debug calls per event without a level check."""

    @staticmethod
    def debug(*args: object) -> None:
        pass


class SSEEvents(SSEClient):
    """sseclient-py's parser without its per-instance ``logging.getLogger`` (which takes the
    logging module's lock) and its debug lines: per response and per event they add up on the
    hot path, and say nothing the gateway's own errors do not.

    sseclient-py parses each event's fields (``events``); ``_read``, which cuts the body into
    events, does it with ``find`` instead of one Python step per line while the body has no
    ``\r`` (what every LLM API sends), and hands a body with ``\r`` line ends to sseclient's
    own line-by-line cutting.
    """

    _logger = _Quiet()

    def __init__(self, event_source: Iterator[bytes], char_enc: str = "utf-8") -> None:
        self._event_source = event_source
        self._char_enc = char_enc

    def _read(self) -> Iterator[bytes]:
        source = iter(self._event_source)
        data = b""
        for chunk in source:
            if b"\r" in chunk:
                # From here on sseclient's own cutting, the unfinished event first.
                self._event_source = itertools.chain((data + chunk,), source)
                yield from super()._read()  # type: ignore[misc]
                return
            data = data + chunk if data else chunk
            start = 0
            # An event ends at the first blank line, i.e. "\n\n", as sseclient cuts it.
            while (end := data.find(b"\n\n", start)) >= 0:
                yield data[start : end + 2]
                start = end + 2
            data = data[start:]
        if data:
            yield data


def body_chunks(response: urllib3.BaseHTTPResponse) -> Iterator[bytes]:
    """Yield the body as it arrives (``stream()`` would wait for a full buffer on plain bodies).

    A chunked body is read by ``_chunks`` (one generator, like urllib3's ``read_chunked``: a run
    waiting for the upstream is parked below every generator on the way, and each costs its
    greenlet ~0.4 KB of saved C stack for as long as the stream is held).
    """
    if response.chunked and response.supports_chunked_reads():  # type: ignore[attr-defined]
        if response.headers.get("content-encoding", "identity").lower() == "identity":
            return _chunks(response._fp)  # type: ignore[attr-defined]
        return response.read_chunked(decode_content=True)  # type: ignore[attr-defined,no-any-return]
    return _plain_chunks(response)


# The longest chunk size line urllib3 accepts.
MAX_CHUNK_LINE = 65536


def _chunks(body: http.client.HTTPResponse) -> Iterator[bytes]:
    """The chunks of a chunked body (no content coding), each as it arrives.

    What urllib3's ``read_chunked`` does for an SSE body, at a third of its cost per chunk (an
    upstream sends every event as a chunk of its own): a size line, one read of the data and
    its CRLF. The same limits and the same ``ProtocolError`` for a broken or short body; once
    the last chunk and the trailers are read the response is closed, as urllib3 does.
    """
    fp = body.fp
    assert fp is not None
    while True:
        line = fp.readline(MAX_CHUNK_LINE + 1)
        if len(line) > MAX_CHUNK_LINE:
            raise ProtocolError("Response chunk size line exceeded maximum allowed length")
        size_text = line.split(b";", 1)[0]
        try:
            size = int(size_text, 16)
        except ValueError:
            size = -1
        if size < 0:
            raise ProtocolError("Invalid chunk length" if line else "Response ended prematurely")
        if size == 0:
            break
        data = fp.read(size + 2)
        if len(data) != size + 2:
            raise ProtocolError("Response ended prematurely")
        yield data[:size]
    while True:  # trailers, up to the blank line
        line = fp.readline(MAX_CHUNK_LINE + 1)
        if not line or line == b"\r\n" or line == b"\n":
            break
    body.close()


def _plain_chunks(response: urllib3.BaseHTTPResponse) -> Iterator[bytes]:
    while True:
        data = response.read1(65536)
        if not data:
            return
        yield data


def release(
    response: urllib3.BaseHTTPResponse, rest: Iterator[bytes] | None = None, wait: float = 0.1
) -> None:
    """Put the connection back in the pool: read what is left of the body first, else close it.

    An upstream ends its chunked body right after ``data: [DONE]``, so this is normally instant;
    one that keeps the body open gets ``wait`` seconds, then the connection is closed instead.
    Stopping a body generator early would close the connection, and a new one per request costs
    a connect and a threadpool ``getaddrinfo`` each time.
    """
    sock = getattr(response.connection, "sock", None)
    if sock is not None:
        # A socket timeout, not a gevent.Timeout: nothing is allocated unless a read has to
        # wait. urllib3 sets the socket's timeout again for the connection's next request.
        sock.settimeout(wait)
    try:
        for _ in rest or ():
            pass
        response.drain_conn()
    except (HTTPError, OSError):
        response.close()
        return
    response.release_conn()


def read_error_message(response: urllib3.BaseHTTPResponse, *, secret: str) -> str:
    """The upstream's error message, short, with the provider key redacted."""
    try:
        raw = response.read(ERROR_BODY_LIMIT)
    except Exception:  # noqa: BLE001 - the status already says enough
        return ""
    try:
        body = json.loads(raw)
        error = body.get("error") if isinstance(body, dict) else None
        message = error.get("message") if isinstance(error, dict) else error
        text = str(message or "")
    except ValueError:
        text = ""
    if secret:
        text = text.replace(secret, "***")
    return text[:300]


class InterruptOnCancel:
    """While the block runs, a cancel raises ``RunCancelled`` in it, even inside a blocked read.

    The upstream connection then closes at once (urllib3 discards a connection whose request
    raised), so the upstream sees the client's disconnect instead of finishing a dead run.
    A slotted object rather than a ``@contextmanager`` with closures: it lives as long as the
    upstream response, which for a held stream is the whole stream.
    """

    __slots__ = ("_cancel", "_run", "_active")

    def __init__(self, cancel: CancelToken) -> None:
        self._cancel = cancel
        self._run = gevent.getcurrent()
        self._active = False

    def __enter__(self) -> None:
        self._active = True
        self._cancel.on_cancel(self._on_cancel)
        if self._cancel.is_set():
            self.__exit__()
            raise RunCancelled()

    def __exit__(self, *exc_info: object) -> None:
        self._active = False
        self._cancel.forget(self._on_cancel)

    def _on_cancel(self) -> None:
        if gevent.getcurrent() is not self._run:
            gevent.get_hub().loop.run_callback(self._throw)

    def _throw(self) -> None:
        if self._active and not self._run.dead:
            self._run.throw(RunCancelled())


def status_error(response: urllib3.BaseHTTPResponse, *, secret: str) -> UpstreamError:
    """Map an upstream HTTP error status to the error the client gets (and close it)."""
    status = response.status
    detail = read_error_message(response, secret=secret)
    response.close()
    if status == 429:
        retry = response.headers.get("retry-after", "")
        return UpstreamRateLimited(retry_after=int(retry) if retry.isdigit() else None)
    if status in (401, 403):
        return UpstreamError(
            f"The model provider rejected the gateway's credentials (HTTP {status})."
        )
    if status in (408, 504):
        return UpstreamTimeout()
    suffix = f": {detail}" if detail and status < 500 else "."
    error = UpstreamError(f"The model provider returned HTTP {status}{suffix}")
    error.retryable = status >= 500
    return error


def _transient(message: str) -> UpstreamError:
    error = UpstreamError(message)
    error.retryable = True
    return error


def stream_post(
    endpoint: Endpoint,
    *,
    body: bytes,
    headers: dict[str, str],
    timeout: urllib3.Timeout,
    cancel: CancelToken,
    secret: str,
    read_sse: SseReader,
    read_json: JsonReader,
) -> Iterator[ProviderEvent]:
    """POST ``body`` and yield the provider events of the streamed (or plain JSON) answer.

    Every provider speaking HTTP goes through here: one place maps connect errors, timeouts and
    HTTP statuses to ``UpstreamError`` subclasses, makes a cancel close the upstream at once, and
    returns a cleanly finished connection to the pool (any other is closed).
    """
    response = None
    chunks: Iterator[bytes] | None = None
    finished = False
    with InterruptOnCancel(cancel):
        try:
            response = endpoint.pool().urlopen(
                "POST",
                endpoint.path,
                body=body,
                headers=headers,
                preload_content=False,
                retries=_NO_RETRIES,
                redirect=False,
                assert_same_host=False,
                timeout=timeout,
            )
            # Sent: the request body (the whole conversation) need not live as long as the
            # stream does.
            del body
            if response.status >= 400:
                raise status_error(response, secret=secret)
            if "text/event-stream" not in response.headers.get("content-type", ""):
                # A server that ignored "stream": answer from its JSON body.
                yield from read_json(response.read())
                finished = True
                return
            # Keep the body iterator: after the end event its rest is read so the connection
            # goes back to the pool (see ``release``).
            chunks = body_chunks(response)
            finished = yield from read_sse(SSEEvents(chunks).events())
            if not finished:
                raise _transient("The model provider ended the stream early.")
        except NewConnectionError:
            raise UpstreamUnreachable() from None
        except (ConnectTimeoutError, ReadTimeoutError, TimeoutError):
            raise UpstreamTimeout() from None
        except (ProtocolError, HTTPError, OSError):
            raise _transient("The model provider closed the connection.") from None
        except (AttributeError, KeyError, IndexError, TypeError, ValueError):
            # Valid JSON of the wrong shape (a null choice, a string delta): the readers index
            # into it trusting the dialect. The upstream's fault, so 502, not a 500 and a traceback.
            raise UpstreamError("The model provider sent an unexpected response.") from None
        finally:
            if response is not None:
                if finished:
                    release(response, chunks)
                else:
                    response.close()
