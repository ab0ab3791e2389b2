"""A fast fake OpenAI Chat Completions upstream for the benchmarks: raw asyncio, no framework.

It must never be the bottleneck, so it does as little as a server can: a hand-written HTTP/1.1
parser with keep-alive and pipelining, no JSON parsing (the model and ``stream`` flag are found
with one regex each), and every response prebuilt once per model and reused.

The model name says what to answer (the gateway sends its agent's model, the passthrough the
client's), ``bench[-<chunks>[-<interval ms>]]``:

- ``stream: false``: one ``chat.completion`` JSON body;
- ``stream: true``: SSE in HTTP chunked encoding, a role chunk, ``<chunks>`` content chunks
  (default 1), a finish chunk, a usage chunk and ``[DONE]``; written in one go, or one content
  chunk every ``<interval ms>`` when an interval is given (the held-streams benchmark).

Run alone: ``python -m bench.upstream --port 8000`` (uvloop when installed).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
from typing import Any

_MODEL_RE = re.compile(rb'"model"\s*:\s*"([^"]*)"')
_STREAM_RE = re.compile(rb'"stream"\s*:\s*true')
_CONTENT_LENGTH_RE = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.IGNORECASE)
_CLOSE_RE = re.compile(rb"\r\nconnection:\s*close", re.IGNORECASE)
_MODEL_SPEC_RE = re.compile(r"^bench(?:-(\d+))?(?:-(\d+))?$")

WORD = "token "
CREATED = 1795300000
MAX_HEADER_BYTES = 65536

_NOT_FOUND = (
    b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 9\r\n\r\nNot Found"
)
_HEALTH = (
    b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{"ok":true}'
)


def _compact(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _chunked(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _event(payload: Any) -> bytes:
    return _chunked(b"data: " + _compact(payload) + b"\n\n")


def _chunk(model: str, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


class Reply:
    """Every byte one model's answers need, built once."""

    def __init__(self, model: str) -> None:
        match = _MODEL_SPEC_RE.match(model)
        chunks = int(match.group(1) or 1) if match else 1
        self.interval = int(match.group(2) or 0) / 1000 if match else 0.0
        usage = {"prompt_tokens": 10, "completion_tokens": chunks, "total_tokens": 10 + chunks}
        body = _compact(
            {
                "id": "chatcmpl-bench",
                "object": "chat.completion",
                "created": CREATED,
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": WORD * chunks},
                        "finish_reason": "stop",
                    }
                ],
                "usage": usage,
            }
        )
        self.json = (
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
            % (len(body), body)
        )
        self.stream_head = (
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n"
            + _event(_chunk(model, {"role": "assistant", "content": ""}))
        )
        self.content = _event(_chunk(model, {"content": WORD}))
        self.chunks = chunks
        usage_chunk = _chunk(model, {})
        usage_chunk["choices"] = []
        usage_chunk["usage"] = usage
        self.stream_tail = (
            _event(_chunk(model, {}, "stop"))
            + _event(usage_chunk)
            + _chunked(b"data: [DONE]\n\n")
            + b"0\r\n\r\n"
        )
        self.stream_all = self.stream_head + self.content * chunks + self.stream_tail


class UpstreamProtocol(asyncio.Protocol):
    """One connection: parse requests as they arrive, answer each from the prebuilt replies."""

    def __init__(self, replies: dict[bytes, Reply]) -> None:
        self.replies = replies
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        self.busy = False  # a timed stream is being written; later requests wait their turn

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.buffer = self.buffer + data if self.buffer else data
        if not self.busy:
            self._serve()

    def _serve(self) -> None:
        transport = self.transport
        while transport is not None and not self.busy:
            buffer = self.buffer
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > MAX_HEADER_BYTES:
                    transport.close()
                return
            head = buffer[: end + 2]
            match = _CONTENT_LENGTH_RE.search(head)
            length = int(match.group(1)) if match else 0
            total = end + 4 + length
            if len(buffer) < total:
                return
            body = buffer[end + 4 : total]
            self.buffer = buffer[total:]
            close = _CLOSE_RE.search(head) is not None
            self._respond(transport, head, body)
            if close:
                transport.close()
                return

    def _respond(self, transport: asyncio.Transport, head: bytes, body: bytes) -> None:
        line = head[: head.find(b"\r\n")]
        if line.startswith(b"GET "):
            transport.write(_HEALTH if b"/health" in line else _NOT_FOUND)
            return
        if not line.startswith(b"POST ") or b"/chat/completions" not in line:
            transport.write(_NOT_FOUND)
            return
        match = _MODEL_RE.search(body)
        model = match.group(1) if match else b"bench"
        reply = self.replies.get(model)
        if reply is None:
            reply = self.replies[model] = Reply(model.decode(errors="replace"))
        if _STREAM_RE.search(body) is None:
            transport.write(reply.json)
        elif not reply.interval:
            transport.write(reply.stream_all)
        else:
            self.busy = True
            transport.write(reply.stream_head)
            asyncio.get_running_loop().create_task(self._timed(reply))

    async def _timed(self, reply: Reply) -> None:
        for i in range(reply.chunks):
            if i:
                await asyncio.sleep(reply.interval)
            if self.transport is None:
                return
            self.transport.write(reply.content)
        if self.transport is None:
            return
        self.transport.write(reply.stream_tail)
        self.busy = False
        self._serve()


async def serve(host: str, port: int, ready: asyncio.Event | None = None) -> None:
    loop = asyncio.get_running_loop()
    replies: dict[bytes, Reply] = {}
    server = await loop.create_server(
        lambda: UpstreamProtocol(replies), host, port, backlog=8192, reuse_address=True
    )
    if ready is not None:
        ready.set()
    async with server:
        await server.serve_forever()


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop when installed (faster), else asyncio's own."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    loop = new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(serve(args.host, args.port))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
