"""Server-sent events framing for chat completion chunks: the one place SSE bytes are made."""

from __future__ import annotations

import json
from typing import Any

from ..agent.errors import GatewayError

DONE = b"data: [DONE]\n\n"
PING = b": ping\n\n"
STREAM_HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
    "Connection": "keep-alive",
    "X-Accel-Buffering": "no",
}

compact_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def frame(payload: Any) -> bytes:
    return b"data: " + compact_json(payload).encode() + b"\n\n"


def error_frame(exc: GatewayError) -> bytes:
    """A failure after the headers went out: an error event (``[DONE]`` follows it)."""
    return frame({"error": {"message": exc.message, "type": "api_error", "code": exc.code}})


class ChunkFramer:
    """``chat.completion.chunk`` frames with a prebuilt head, since only the delta changes."""

    def __init__(self, completion_id: str, created: int, model: str) -> None:
        self.head = (
            f'data: {{"id":{compact_json(completion_id)},"object":"chat.completion.chunk",'
            f'"created":{created},"model":{compact_json(model)},"choices":'
        ).encode()
        self._content_head = self.head + b'[{"index":0,"delta":{"content":'
        self._content_tail = b'},"finish_reason":null}]}\n\n'

    def choice(self, delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        body = {"index": 0, "delta": delta, "finish_reason": finish_reason}
        return self.head + b"[" + compact_json(body).encode() + b"]}\n\n"

    def content(self, text: str) -> bytes:
        return self._content_head + compact_json(text).encode() + self._content_tail

    def usage(self, usage: dict[str, int]) -> bytes:
        return self.head + b'[],"usage":' + compact_json(usage).encode() + b"}\n\n"
