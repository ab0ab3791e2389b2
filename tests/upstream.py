"""Scriptable fake LLM upstream for the test suite.

A real HTTP/1.1 server (stdlib ``ThreadingHTTPServer``, keep-alive, daemon threads) bound to
``127.0.0.1:<free port>`` and served from a background thread of the pytest process::

    up = Upstream().start()              # or: with Upstream() as up:
    point_the_gateway_at(up.base_url)    # "http://127.0.0.1:<port>/v1"
    up.script(reply("hi"), error(429))   # FIFO, one behaviour per /chat/completions request
    ...
    up.wait_for(lambda u: u.closed_connections == 1)
    up.stop()

With an empty queue every request gets ``echo()``: "You said: <last user message text>".

A behaviour can also be chosen per request by a directive in the last user message, which wins
over the queue (and does not consume it), so concurrent tests do not race on the queue::

    [[upstream:slow interval=0.3 chunks=4]]   [[upstream:error status=429]]
    [[upstream:stall seconds=10]]             [[upstream:drop after_chunks=2]]
    [[upstream:reply text=hello_world]]       [[upstream:tool_call name=f arguments={"a":1}]]

A directive only applies while the last user message is still unanswered, i.e. no ``assistant``
or ``tool`` message follows it; the follow-up turn of a tool loop therefore gets the queue/echo
instead of calling the tool forever. ``[[tag:NAME]]`` anywhere in any message (or the
``x-test-session`` header) tags a request for ``max_concurrent[NAME]``; ``"*"`` counts all.

Usage numbers are deterministic: see ``count_prompt_tokens`` / ``count_completion_tokens``.

``POST /v1/messages`` speaks Anthropic Messages (JSON and SSE) with the same queue, behaviours
and directives: ``anthropic_as_chat`` reads the request as chat messages (``tool_result`` blocks
as ``tool`` messages), errors use Anthropic's ``{"type": "error", "error": {...}}`` body.
"""

from __future__ import annotations

import json
import re
import select
import shlex
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

MODEL_ID = "echo-model"
_POLL = 0.02  # granularity of pauses / disconnect checks (seconds)


# --------------------------------------------------------------------------- data


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # lower-cased keys
    body: dict[str, Any] | None  # parsed JSON object, None if not JSON
    raw: bytes
    time: float  # time.time() when the request was fully read


@dataclass
class Behaviour:
    kind: str
    text: str | None = None  # None = echo text
    chunks: int | None = None
    interval: float = 0.0
    seconds: float = 0.0
    status: int = 200
    message: str = "upstream error"
    body: bytes | str | None = None
    headers: dict[str, str] | None = None
    after_chunks: int = 1
    finish_reason: str = "stop"
    usage: dict[str, int] | None = None
    calls: list[tuple[str, str, str]] = field(default_factory=list)
    then: Behaviour | None = None  # tool_call: pushed to the queue front when consumed


def echo() -> Behaviour:
    return Behaviour("echo")


def reply(
    text: str,
    chunks: int | None = None,
    finish_reason: str = "stop",
    usage: dict[str, int] | None = None,
) -> Behaviour:
    return Behaviour("reply", text=text, chunks=chunks, finish_reason=finish_reason, usage=usage)


def slow(text: str = "slow reply", chunks: int = 5, interval: float = 0.2) -> Behaviour:
    return Behaviour("slow", text=text, chunks=chunks, interval=interval)


def stall(seconds: float = 30) -> Behaviour:
    """Nothing at all (no headers) for ``seconds``; then, if the client is still there, an echo reply."""
    return Behaviour("stall", seconds=seconds)


def stall_after_first_chunk(seconds: float = 30, text: str | None = None) -> Behaviour:
    """Headers + first content chunk, stall, then (client still there) the rest of the reply."""
    return Behaviour("stall_after_first_chunk", seconds=seconds, text=text)


def error(
    status: int,
    message: str = "upstream error",
    body: bytes | str | None = None,
    headers: dict[str, str] | None = None,
) -> Behaviour:
    return Behaviour("error", status=status, message=message, body=body, headers=headers)


def drop_mid_stream(after_chunks: int = 1, text: str | None = None) -> Behaviour:
    return Behaviour("drop_mid_stream", after_chunks=after_chunks, text=text)


def reset_before_headers() -> Behaviour:
    return Behaviour("reset_before_headers")


def invalid_json() -> Behaviour:
    return Behaviour("invalid_json")


def no_done(text: str | None = None) -> Behaviour:
    return Behaviour("no_done", text=text)


def tool_call(
    name: str, arguments: str, call_id: str = "call_1", then: Behaviour | None = None
) -> Behaviour:
    return Behaviour(
        "tool_call",
        calls=[(name, arguments, call_id)],
        finish_reason="tool_calls",
        then=then,
    )


def tool_calls(calls: list[tuple[str, str, str]]) -> Behaviour:
    return Behaviour("tool_calls", calls=list(calls), finish_reason="tool_calls")


# --------------------------------------------------------------------------- helpers


def _texts(content: Any) -> list[str]:
    if isinstance(content, str):
        return [content]
    if isinstance(content, list):
        return [
            p["text"]
            for p in content
            if isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
        ]
    return []


def _messages(body: dict[str, Any] | None) -> list[dict[str, Any]]:
    msgs = (body or {}).get("messages")
    return [m for m in msgs if isinstance(m, dict)] if isinstance(msgs, list) else []


def count_prompt_tokens(messages: list[dict[str, Any]]) -> int:
    """Whitespace-separated words over all text content + number of messages."""
    return sum(len(t.split()) for m in messages for t in _texts(m.get("content"))) + len(messages)


def count_completion_tokens(text: str) -> int:
    return len(text.split())


def _last_user_index(messages: list[dict[str, Any]]) -> int | None:
    for i in range(len(messages) - 1, -1, -1):
        if messages[i].get("role") == "user":
            return i
    return None


def echo_text(messages: list[dict[str, Any]]) -> str:
    i = _last_user_index(messages)
    return "You said: " + ("" if i is None else "\n".join(_texts(messages[i].get("content"))))


def split_text(text: str, pieces: int | None = None) -> list[str]:
    """Split ``text`` into ``pieces`` (default: up to 3) parts on word boundaries, else by characters."""
    if not text:
        return []
    words = re.findall(r"\s*\S+\s*", text)
    n = max(1, min(pieces or min(3, max(1, len(words))), len(text)))
    units: list[str] = words if n <= len(words) and "".join(words) == text else list(text)
    size, extra = divmod(len(units), n)
    out, start = [], 0
    for i in range(n):
        end = start + size + (1 if i < extra else 0)
        out.append("".join(units[start:end]))
        start = end
    return out


_INTS = {"chunks", "status", "after_chunks"}
_FLOATS = {"interval", "seconds"}
_KINDS: dict[str, Callable[..., Behaviour]] = {
    "echo": echo, "reply": reply, "slow": slow, "stall": stall, "stall_after_first_chunk": stall_after_first_chunk,
    "error": error, "drop": drop_mid_stream, "drop_mid_stream": drop_mid_stream, "reset": reset_before_headers,
    "reset_before_headers": reset_before_headers, "invalid_json": invalid_json, "no_done": no_done,
    "tool_call": tool_call,
}  # fmt: skip


def parse_directive(text: str) -> Behaviour | None:
    """``[[upstream:KIND k=v ...]]`` -> Behaviour; None if absent; error(400) if malformed."""
    m = re.search(r"\[\[upstream:(\w+)", text)
    if not m:
        return None
    kind, rest = m.group(1), text[m.end() :]
    args_raw: str | None = None
    if "arguments=" in rest:  # arguments = everything up to the last "]]"
        head, _, tail = rest.partition("arguments=")
        rest, args_raw = head, tail[: tail.rfind("]]")] if "]]" in tail else tail
        args_raw = args_raw.strip()
    else:
        rest = rest[: rest.find("]]")] if "]]" in rest else rest
    try:
        tokens = shlex.split(rest)
    except ValueError:
        tokens = rest.split()
    kwargs: dict[str, Any] = {} if args_raw is None else {"arguments": args_raw}
    for tok in tokens:
        key, eq, value = tok.partition("=")
        if not eq:
            return error(400, f"bad upstream directive token {tok!r}")
        try:
            kwargs[key] = int(value) if key in _INTS else float(value) if key in _FLOATS else value
        except ValueError:
            return error(400, f"bad upstream directive value {tok!r}")
    if kind not in _KINDS:
        return error(400, f"unknown upstream directive {kind!r}")
    try:
        return _KINDS[kind](**kwargs)
    except TypeError as exc:
        return error(400, f"bad upstream directive: {exc}")


_ANTHROPIC_STOP = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}


def anthropic_as_chat(body: dict[str, Any] | None) -> list[dict[str, Any]]:
    """An Anthropic Messages request as Chat Completions messages, so the same behaviours,
    directives, echo text and token counts apply: ``tool_result`` blocks become ``tool``
    messages, ``tool_use`` blocks ``tool_calls``, the ``system`` prompt a system message."""
    out: list[dict[str, Any]] = []
    system = (body or {}).get("system")
    if isinstance(system, list):
        system = "\n".join(b.get("text", "") for b in system if isinstance(b, dict))
    if isinstance(system, str) and system:
        out.append({"role": "system", "content": system})
    for m in _messages(body):
        content = m.get("content")
        role = m.get("role")
        if isinstance(content, str):
            out.append({"role": role, "content": content})
            continue
        blocks = [b for b in content or () if isinstance(b, dict)]
        for b in blocks:
            if b.get("type") == "tool_result":
                result = b.get("content")
                text = result if isinstance(result, str) else "\n".join(_texts(result))
                out.append({"role": "tool", "tool_call_id": b.get("tool_use_id"), "content": text})
        parts = [{"type": "text", "text": b["text"]} for b in blocks if b.get("type") == "text"]
        if role == "assistant":
            calls = [
                {
                    "id": b.get("id"),
                    "type": "function",
                    "function": {"name": b.get("name"), "arguments": json.dumps(b.get("input"))},
                }
                for b in blocks
                if b.get("type") == "tool_use"
            ]
            out.append(
                {"role": "assistant", "content": parts} | ({"tool_calls": calls} if calls else {})
            )
        elif parts or any(b.get("type") == "image" for b in blocks):
            out.append({"role": "user", "content": parts})
    return out


class _ClientGone(Exception):
    pass


# --------------------------------------------------------------------------- server


class _Server(ThreadingHTTPServer):
    # The default listen backlog (5) drops and resets connections when a load test opens
    # hundreds at once; a real upstream's backlog is far larger.
    request_queue_size = 1024


class Upstream:
    def __init__(self, port: int = 0) -> None:
        """``port`` 0 (default) binds a free port; a fixed one serves a config that names it."""
        self._bind_port = port
        self._lock = threading.Lock()
        self.requests: list[RecordedRequest] = []
        self.errors: list[str] = []  # unexpected handler exceptions (never printed)
        self.disconnects_during_response = 0
        self.connections_opened = 0  # TCP connections accepted (pooled clients reuse them)
        self.active_streams = 0
        self.max_concurrent: dict[str, int] = {"*": 0}
        self._inflight: dict[str, int] = {}
        self._queue: list[Behaviour] = []
        self._conns: set[socket.socket] = set()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0
        self.base_url = ""
        self.stopping = False

    # ---- public API
    @property
    def closed_connections(self) -> int:
        return self.disconnects_during_response

    def start(self) -> Upstream:
        handler = type("_BoundHandler", (_Handler,), {"upstream": self})
        server = _Server(("127.0.0.1", self._bind_port), handler)
        server.daemon_threads = True
        server.block_on_close = False  # type: ignore[attr-defined]
        server.handle_error = lambda request, client_address: None  # type: ignore[method-assign]
        self._server, self.port = server, server.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping = True
        if self._server is not None:
            self._server.shutdown()
            with self._lock:
                conns = list(self._conns)
            for sock in conns:  # wake handler threads blocked on idle keep-alive connections
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self._server.server_close()
            if self._thread is not None:
                self._thread.join(timeout=5)
            self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()
            self.errors.clear()
            self._queue.clear()
            self.disconnects_during_response = 0
            self.max_concurrent.clear()
            self.max_concurrent["*"] = 0

    def script(self, *behaviours: Behaviour) -> None:
        with self._lock:
            self._queue.extend(behaviours)

    def wait_for(self, predicate: Callable[[Upstream], bool], timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate(self):
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"upstream condition not met within {timeout}s: requests={len(self.requests)} "
                    f"closed_connections={self.closed_connections} active_streams={self.active_streams} "
                    f"max_concurrent={self.max_concurrent} errors={self.errors[-3:]}"
                )
            time.sleep(0.01)

    # ---- used by the handler
    def _record(self, req: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(req)

    def _next_behaviour(self) -> Behaviour:
        with self._lock:
            if not self._queue:
                return echo()
            b = self._queue.pop(0)
            if b.then is not None:
                self._queue.insert(0, b.then)
            return b

    def _enter(self, tags: set[str]) -> None:
        with self._lock:
            for tag in tags:
                self._inflight[tag] = self._inflight.get(tag, 0) + 1
                self.max_concurrent[tag] = max(self.max_concurrent.get(tag, 0), self._inflight[tag])

    def _leave(self, tags: set[str]) -> None:
        with self._lock:
            for tag in tags:
                self._inflight[tag] -= 1

    def _bump(self, attr: str, delta: int) -> None:
        with self._lock:
            setattr(self, attr, getattr(self, attr) + delta)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    upstream: Upstream  # set on the per-server subclass

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        with self.upstream._lock:
            self.upstream._conns.add(self.connection)
            self.upstream.connections_opened += 1

    def finish(self) -> None:
        with self.upstream._lock:
            self.upstream._conns.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    # ---- dispatch
    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_GET

    def _dispatch(self) -> None:
        self._gone = False
        self._headers_sent = False
        try:
            raw = self._read_body()
        except (OSError, ValueError):
            self.close_connection = True
            return
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        body = body if isinstance(body, dict) else None
        path = self.path.split("?", 1)[0].rstrip("/")
        headers = {k.lower(): v for k, v in self.headers.items()}
        self.upstream._record(RecordedRequest(self.command, path, headers, body, raw, time.time()))
        try:
            if path in ("/v1/chat/completions", "/chat/completions") and self.command == "POST":
                self._chat(body, headers)
            elif path in ("/v1/models", "/models") and self.command == "GET":
                model = {
                    "id": MODEL_ID,
                    "object": "model",
                    "created": 0,
                    "owned_by": "fake-upstream",
                }
                self._send_json(200, {"object": "list", "data": [model]})
            elif path in ("/v1/messages", "/messages") and self.command == "POST":
                self._anthropic(body, headers)
            else:
                self._send_error_json(404, f"no route for {self.command} {path}", "not_found")
        except _ClientGone:
            self.close_connection = True
        except Exception as exc:  # noqa: BLE001 - never crash the server on bad input
            self.upstream.errors.append(f"{type(exc).__name__}: {exc}")
            self.close_connection = True
            if not self._headers_sent:
                try:
                    self._send_error_json(500, f"fake upstream bug: {exc}", "server_error")
                except _ClientGone:
                    pass

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    # ---- low-level io
    def _disconnected(self) -> None:
        if not self._gone:
            self._gone = True
            self.upstream._bump("disconnects_during_response", 1)
        self.close_connection = True
        raise _ClientGone

    def _write(self, data: bytes) -> None:
        try:
            self.wfile.write(data)
            self.wfile.flush()
        except OSError:
            self._disconnected()

    def _peer_closed(self, timeout: float) -> bool:
        try:
            readable, _, _ = select.select([self.connection], [], [], timeout)
            if not readable:
                return False
            data = self.connection.recv(1, socket.MSG_PEEK)
        except BlockingIOError:
            return False
        except (OSError, ValueError):
            return True
        if data:  # pipelined bytes, client still there: avoid spinning on select
            time.sleep(timeout)
        return not data

    def _pause(self, seconds: float) -> None:
        """Sleep ``seconds`` while watching for the client going away (noticed within ~_POLL)."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if self.upstream.stopping or self._peer_closed(min(_POLL, left)):
                self._disconnected()

    def _start_response(self, status: int, headers: dict[str, str]) -> None:
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self._headers_sent = True
        try:
            self.end_headers()
        except OSError:
            self._disconnected()

    def _send_bytes(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        hdrs = (
            {"Content-Type": "application/json"}
            | (headers or {})
            | {"Content-Length": str(len(body))}
        )
        self._start_response(status, hdrs)
        self._write(body)

    def _send_json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        self._send_bytes(status, json.dumps(obj).encode(), headers)

    def _send_error_json(self, status: int, message: str, type_: str = "upstream_error") -> None:
        self._send_json(status, {"error": {"message": message, "type": type_}})

    def _chunk(self, data: bytes) -> None:
        self._write(b"%X\r\n%s\r\n" % (len(data), data))

    def _event(self, obj: Any) -> None:
        self._chunk(
            b"data: " + (obj if isinstance(obj, bytes) else json.dumps(obj).encode()) + b"\n\n"
        )

    def _kill_socket(self, rst: bool) -> None:
        sock = self.connection
        try:
            if rst:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            else:
                sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.rfile.close()  # drop the makefile() reference so close() really closes the fd
        sock.close()
        self.close_connection = True

    # ---- chat completions
    def _chat(self, body: dict[str, Any] | None, headers: dict[str, str]) -> None:
        if body is None:
            self._send_error_json(
                400, "request body must be a JSON object", "invalid_request_error"
            )
            return
        msgs = _messages(body)
        tags = {"*"} | set(
            re.findall(
                r"\[\[tag:([^\]\s]+)\]\]",
                " ".join(t for m in msgs for t in _texts(m.get("content"))),
            )
        )
        if headers.get("x-test-session"):
            tags.add(headers["x-test-session"])
        self.upstream._enter(tags)
        try:
            self._chat_respond(body, msgs)
        finally:
            self.upstream._leave(tags)

    def _chat_respond(self, body: dict[str, Any], msgs: list[dict[str, Any]]) -> None:
        b: Behaviour | None = None
        i = _last_user_index(msgs)
        if i is not None and not any(m.get("role") in ("assistant", "tool") for m in msgs[i + 1 :]):
            b = parse_directive("\n".join(_texts(msgs[i].get("content"))))
        b = b or self.upstream._next_behaviour()
        stream = body.get("stream") is True
        kind = b.kind
        if kind == "reset_before_headers":
            self._kill_socket(rst=True)
            return
        if kind == "error":
            raw = (
                b.body
                if b.body is not None
                else json.dumps({"error": {"message": b.message, "type": "upstream_error"}})
            )
            self._send_bytes(b.status, raw.encode() if isinstance(raw, str) else raw, b.headers)
            return
        if kind == "invalid_json":
            if not stream:
                self._send_bytes(200, b"{not json")
                return
            self._start_stream()
            self._chunk(b"data: {not json\n\n")
            self._chunk(b"")
            return
        if kind == "stall":
            self._pause(b.seconds)
            b = replace(b, kind="echo")

        text = b.text if b.text is not None else echo_text(msgs)
        calls = b.calls
        chunks = b.chunks
        if kind == "drop_mid_stream":
            chunks = max(len(split_text(text)), b.after_chunks + 1)
        prompt = count_prompt_tokens(msgs)
        completion = 1 if calls else count_completion_tokens(text)
        usage = b.usage or {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }
        rid, created, model = (
            f"chatcmpl-fake-{time.monotonic_ns()}",
            int(time.time()),
            body.get("model") or MODEL_ID,
        )

        if not stream:
            if kind == "slow":
                self._pause((b.chunks or 0) * b.interval)
            message: dict[str, Any] = {
                "role": "assistant",
                "content": None if calls else text,
            }
            if calls:
                message["tool_calls"] = [
                    {
                        "id": cid,
                        "type": "function",
                        "function": {"name": name, "arguments": args},
                    }
                    for name, args, cid in calls
                ]
            choice = {"index": 0, "message": message, "finish_reason": b.finish_reason}
            obj = {
                "id": rid,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [choice],
                "usage": usage,
            }
            payload = json.dumps(obj).encode()
            if kind in ("drop_mid_stream", "stall_after_first_chunk"):
                self._start_response(
                    200,
                    {
                        "Content-Type": "application/json",
                        "Content-Length": str(len(payload)),
                    },
                )
                self._write(payload[: len(payload) // 2])
                if kind == "drop_mid_stream":
                    self._kill_socket(rst=False)
                    return
                self._pause(b.seconds)
                self._write(payload[len(payload) // 2 :])
                return
            self._send_bytes(200, payload)
            return

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            choice = {"index": 0, "delta": delta, "finish_reason": finish}
            return {
                "id": rid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [choice],
            }

        self._start_stream()
        self.upstream._bump("active_streams", 1)
        try:
            if calls:
                for idx, (name, args, cid) in enumerate(calls):
                    head = {
                        "index": idx,
                        "id": cid,
                        "type": "function",
                        "function": {"name": name, "arguments": ""},
                    }
                    first: dict[str, Any] = (
                        {"role": "assistant", "content": None} if idx == 0 else {}
                    )
                    self._event(chunk(first | {"tool_calls": [head]}))
                    for frag in split_text(args, min(3, len(args)) or None):
                        self._event(
                            chunk({"tool_calls": [{"index": idx, "function": {"arguments": frag}}]})
                        )
            else:
                self._event(chunk({"role": "assistant", "content": ""}))
                if kind == "drop_mid_stream" and b.after_chunks <= 0:
                    self._kill_socket(rst=False)
                    return
                for n, piece in enumerate(split_text(text, chunks), start=1):
                    if kind == "slow" and n > 1:
                        self._pause(b.interval)
                    self._event(chunk({"content": piece}))
                    if kind == "drop_mid_stream" and n >= b.after_chunks:
                        self._kill_socket(rst=False)
                        return
                    if kind == "stall_after_first_chunk" and n == 1:
                        self._pause(b.seconds)
            self._event(chunk({}, b.finish_reason))
            opts = body.get("stream_options")
            if isinstance(opts, dict) and opts.get("include_usage") is True:
                self._event(
                    {
                        "id": rid,
                        "object": "chat.completion.chunk",
                        "created": created,
                        "model": model,
                        "choices": [],
                        "usage": usage,
                    }
                )
            if kind != "no_done":
                self._event(b"[DONE]")
            self._chunk(b"")
        finally:
            self.upstream._bump("active_streams", -1)

    def _start_stream(self) -> None:
        self._start_response(
            200,
            {
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "Transfer-Encoding": "chunked",
            },
        )

    # ---- Anthropic Messages (POST /v1/messages): same behaviours, queue and directives
    def _anthropic(self, body: dict[str, Any] | None, headers: dict[str, str]) -> None:
        if body is None or not isinstance(body.get("messages"), list):
            self._send_json(
                400,
                {
                    "type": "error",
                    "error": {"type": "invalid_request_error", "message": "bad body"},
                },
            )
            return
        msgs = anthropic_as_chat(body)
        tags = {"*"} | set(
            re.findall(
                r"\[\[tag:([^\]\s]+)\]\]",
                " ".join(t for m in msgs for t in _texts(m.get("content"))),
            )
        )
        self.upstream._enter(tags)
        try:
            self._anthropic_respond(body, msgs)
        finally:
            self.upstream._leave(tags)

    def _anthropic_respond(self, body: dict[str, Any], msgs: list[dict[str, Any]]) -> None:
        b: Behaviour | None = None
        i = _last_user_index(msgs)
        if i is not None and not any(m.get("role") in ("assistant", "tool") for m in msgs[i + 1 :]):
            b = parse_directive("\n".join(_texts(msgs[i].get("content"))))
        b = b or self.upstream._next_behaviour()
        stream = body.get("stream") is True
        kind = b.kind
        if kind == "reset_before_headers":
            self._kill_socket(rst=True)
            return
        if kind == "error":
            raw = (
                b.body
                if b.body is not None
                else json.dumps(
                    {"type": "error", "error": {"type": "api_error", "message": b.message}}
                )
            )
            self._send_bytes(b.status, raw.encode() if isinstance(raw, str) else raw, b.headers)
            return
        if kind == "invalid_json":
            if not stream:
                self._send_bytes(200, b"{not json")
                return
            self._start_stream()
            self._chunk(b"event: message_start\ndata: {not json\n\n")
            self._chunk(b"")
            return
        if kind == "stall":
            self._pause(b.seconds)
        text = b.text if b.text is not None else echo_text(msgs)
        calls = b.calls
        prompt = count_prompt_tokens(msgs)
        completion = 1 if calls else count_completion_tokens(text)
        if b.usage:
            prompt = b.usage.get("prompt_tokens", prompt)
            completion = b.usage.get("completion_tokens", completion)
        stop = _ANTHROPIC_STOP.get(b.finish_reason, b.finish_reason)
        mid, model = f"msg_fake_{time.monotonic_ns()}", body.get("model") or MODEL_ID
        content: list[dict[str, Any]] = (
            [] if calls or not text else [{"type": "text", "text": text}]
        )
        content += [
            {"type": "tool_use", "id": cid, "name": name, "input": json.loads(args or "{}")}
            for name, args, cid in calls
        ]
        if not stream:
            if kind == "slow":
                self._pause((b.chunks or 0) * b.interval)
            self._send_json(
                200,
                {
                    "id": mid,
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": content,
                    "stop_reason": stop,
                    "stop_sequence": None,
                    "usage": {"input_tokens": prompt, "output_tokens": completion},
                },
            )
            return

        def event(name: str, obj: dict[str, Any]) -> None:
            self._chunk(f"event: {name}\ndata: {json.dumps({'type': name} | obj)}\n\n".encode())

        self._start_stream()
        self.upstream._bump("active_streams", 1)
        try:
            start = {"id": mid, "type": "message", "role": "assistant", "model": model}
            start |= {"content": [], "stop_reason": None, "stop_sequence": None}
            start["usage"] = {"input_tokens": prompt, "output_tokens": 1}
            event("message_start", {"message": start})
            event("ping", {})
            index = 0
            if not calls:
                event(
                    "content_block_start",
                    {"index": 0, "content_block": {"type": "text", "text": ""}},
                )
                for n, piece in enumerate(split_text(text, b.chunks), start=1):
                    if kind == "slow" and n > 1:
                        self._pause(b.interval)
                    event(
                        "content_block_delta",
                        {"index": 0, "delta": {"type": "text_delta", "text": piece}},
                    )
                    if kind == "drop_mid_stream" and n >= b.after_chunks:
                        self._kill_socket(rst=False)
                        return
                    if kind == "stall_after_first_chunk" and n == 1:
                        self._pause(b.seconds)
                event("content_block_stop", {"index": 0})
                index = 1
            for name, args, cid in calls:
                block = {"type": "tool_use", "id": cid, "name": name, "input": {}}
                event("content_block_start", {"index": index, "content_block": block})
                for frag in split_text(args, min(3, len(args)) or None):
                    delta = {"type": "input_json_delta", "partial_json": frag}
                    event("content_block_delta", {"index": index, "delta": delta})
                event("content_block_stop", {"index": index})
                index += 1
            delta = {"stop_reason": stop, "stop_sequence": None}
            event("message_delta", {"delta": delta, "usage": {"output_tokens": completion}})
            if kind != "no_done":
                event("message_stop", {})
            self._chunk(b"")
        finally:
            self.upstream._bump("active_streams", -1)
