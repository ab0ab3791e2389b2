"""``POST /v1/chat/completions``: parse, route, run the agent, shape JSON or SSE (SPEC 3)."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from typing import Any

import gevent
from flask import Blueprint, Response, request
from gevent.queue import Empty, Queue, UnboundQueue

from ..agent.errors import GatewayError, RunCancelled, Unavailable
from ..agent.types import AgentEvent, AgentRunRequest, AgentRunResult, CancelToken
from ..routing import random_uuid
from ..runtime import Gateway
from .context import gateway
from .disconnect import ClientWatch, watch_disconnect
from .errors import JSON_TYPE
from .observe import note_output, note_run
from .protocol import ChatRequest, header, parse_chat_request, parse_json, read_body
from .sse import DONE, PING, STREAM_HEADERS, ChunkFramer, compact_json, error_frame
from .streams import DRAIN_DEADLINE, OpenStreams, open_streams

log = logging.getLogger("openclaw_gateway.http")

bp = Blueprint("chat_completions", __name__)

_FINISHED = object()  # queue sentinel: the client left, stop streaming


def _run_request(runtime: Gateway, environ: dict[str, Any], chat: ChatRequest) -> AgentRunRequest:
    settings = runtime.settings.gateway.http
    conversation = next(
        (value for h in settings.session_headers if (value := header(environ, h))), None
    )
    task = any(header(environ, h) is not None for h in settings.task_headers)
    route = runtime.route(
        agent_id=header(environ, "x-openclaw-agent-id"),
        model=chat.model,
        session_key=header(environ, "x-openclaw-session-key"),
        conversation_id=conversation,
        user=chat.user,
        task=task,
        model_override=header(environ, "x-openclaw-model"),
    )
    return AgentRunRequest(
        agent=route.agent,
        session_key=route.session_key,
        stateless=route.stateless,
        messages=chat.messages,
        run_id=os.urandom(16).hex(),
        extra_system_prompt=chat.extra_system_prompt,
        tools=chat.tools,
        tool_choice=chat.tool_choice,
        options=chat.options,
        model_override=route.model_override,
    )


@bp.route("/v1/chat/completions", methods=["POST"], provide_automatic_options=False)
def chat_completions() -> Response:
    runtime = gateway()
    environ = request.environ
    settings = runtime.settings.gateway.http.chat_completions
    body = parse_json(read_body(environ, settings.max_body_bytes))
    chat = parse_chat_request(body, settings)
    run = _run_request(runtime, environ, chat)
    note_run(runtime, environ, run)
    runtime.refuse_if_draining()  # before a stream's 200 goes out
    model = chat.model if chat.model is not None else "openclaw"
    completion_id = f"chatcmpl_{random_uuid()}"
    created = int(time.time())
    if chat.stream:
        framer = ChunkFramer(completion_id, created, model)
        stream = _stream(
            runtime, environ, run, framer, chat.include_usage, settings.keepalive_seconds
        )
        # Passed through as the WSGI body: no werkzeug wrapper generator and iterator between
        # the server's loop and ours (each one deepens the greenlet's saved C stack), and the
        # Response object is not kept alive by them for the whole stream.
        return Response(stream, status=200, headers=STREAM_HEADERS, direct_passthrough=True)
    result = _run_until_disconnect(runtime, environ, run)  # RunCancelled: errors.py answers 499
    note_output(runtime, environ, result.text)
    return Response(_completion_body(result, completion_id, created, model), content_type=JSON_TYPE)


def _run_until_disconnect(
    runtime: Gateway, environ: dict[str, Any], run: AgentRunRequest
) -> AgentRunResult:
    cancel = CancelToken()
    watcher = watch_disconnect(environ, cancel.set)
    try:
        return runtime.run_agent(run, cancel=cancel)
    finally:
        if watcher is not None:
            watcher.stop()


def _completion_body(result: AgentRunResult, completion_id: str, created: int, model: str) -> str:
    message: dict[str, Any] = {"role": "assistant", "content": result.text}
    if result.tool_calls:
        message["content"] = result.text or None
        message["tool_calls"] = [call.to_openai() for call in result.tool_calls]
    return compact_json(
        {
            "id": completion_id,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": result.finish_reason}],
            "usage": result.usage.to_openai(),
        }
    )


def _stream(
    runtime: Gateway,
    environ: dict[str, Any],
    run: AgentRunRequest,
    framer: ChunkFramer,
    include_usage: bool,
    keepalive: float,
) -> Iterator[bytes]:
    """Run the agent in a greenlet and turn its events into SSE frames as they come.

    The headers wait until the run has its session lease (its ``lifecycle`` start): a session
    that stays busy for ``lockWaitMs`` is a plain 409 with ``Retry-After``, as for JSON, rather
    than a 200 whose stream holds an error.
    """
    stream = _Stream(framer, include_usage, keepalive)
    # A raw greenlet: the run reports every outcome through the queue, so a gevent.Greenlet's
    # links, result and spawning stack would only add ~2.5 KB to each held stream.
    gevent.spawn_raw(stream.run, runtime, run)
    stream.watcher = watch_disconnect(environ, stream.client_left)
    first = stream.events.get()
    if isinstance(first, GatewayError) or first is _FINISHED:
        stream.stop_watching()
        if isinstance(first, GatewayError):
            raise first
        return iter(())
    return stream.frames(first, open_streams())


class _Stream:
    """One SSE response: the run's greenlet fills ``events``, ``frames`` turns them into bytes.

    An object with slots rather than closures over ``_stream``'s locals: it lives as long as
    the stream, and the cells, functions and closure tuples came to ~1 KB per held stream.
    """

    __slots__ = ("events", "cancel", "framer", "include_usage", "keepalive", "watcher")

    def __init__(self, framer: ChunkFramer, include_usage: bool, keepalive: float) -> None:
        # Unbounded (puts never block), so it needs no deque of waiting putters: -0.75 KB.
        self.events: Queue[Any] = UnboundQueue()
        self.cancel = CancelToken()
        self.framer = framer
        self.include_usage = include_usage
        self.keepalive = keepalive
        self.watcher: ClientWatch | None = None

    def run(self, runtime: Gateway, run: AgentRunRequest) -> None:
        """The run's greenlet: the result, or how it ended, goes through the queue too."""
        events = self.events
        try:
            events.put(runtime.run_agent(run, emit=events.put, cancel=self.cancel))
        except RunCancelled:
            events.put(_FINISHED)
        except GatewayError as exc:
            events.put(exc)
        except Exception:
            log.exception("run %s failed", run.run_id)
            events.put(GatewayError())

    def client_left(self) -> None:
        self.cancel.set()
        self.events.put(_FINISHED)

    def stop_watching(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()

    def frames(self, item: Any, streams: OpenStreams) -> Iterator[bytes]:
        """The body: the role chunk, then ``item`` (the run's first event) and what follows."""
        events = self.events
        streams.add(events)
        try:
            yield self.framer.choice({"role": "assistant"})
            while True:
                frames, done = self._batch(item)
                # Nothing of a batch stays referenced during the wait for the next one: a held
                # stream spends its life waiting.
                del item
                if frames:
                    yield frames
                del frames
                if done:
                    return
                # The wait is here, not in a nested generator: every generator between the
                # server's loop and the switch adds ~0.4 KB to the greenlet's saved C stack.
                while True:
                    try:
                        item = events.get(timeout=self.keepalive or None)
                        break
                    except Empty:
                        yield PING
        finally:
            # A client that left (GeneratorExit) or a finished run: stop the run either way.
            self.cancel.set()
            streams.discard(events)
            self.stop_watching()

    def _batch(self, item: Any) -> tuple[bytes, bool]:
        """The frames of ``item`` and of every item queued behind it; whether the stream is over.

        What is queued already goes out in the same write: a burst of deltas (one upstream
        read) costs one send instead of one per frame.
        """
        framer = self.framer
        frames: list[bytes] = []
        while True:
            if isinstance(item, AgentEvent):
                frame = _event_frame(framer, item)
                if frame:
                    frames.append(frame)
            elif isinstance(item, AgentRunResult):
                frames.append(framer.choice({}, item.finish_reason))
                if self.include_usage:
                    frames.append(framer.usage(item.usage.to_openai()))
                frames.append(DONE)
                return b"".join(frames), True
            elif isinstance(item, GatewayError):
                frames += (error_frame(item), DONE)
                return b"".join(frames), True
            elif item is DRAIN_DEADLINE:
                self.cancel.set()
                frames += (error_frame(Unavailable("The gateway is shutting down.")), DONE)
                return b"".join(frames), True
            else:
                return b"", True  # the client left: nobody to write to
            if self.events.empty():
                return b"".join(frames), False
            item = self.events.get_nowait()


def _event_frame(framer: ChunkFramer, event: AgentEvent) -> bytes | None:
    if event.stream == "assistant":
        return framer.content(event.data["delta"])
    if event.stream == "tool_call":
        data = event.data
        fragment = b""
        if data["arguments"]:
            delta = {"index": data["index"], "function": {"arguments": data["arguments"]}}
            fragment = framer.choice({"tool_calls": [delta]})
        if data["name"] is None:
            return fragment or None
        head = {
            "index": data["index"],
            "id": data["id"] or f"call_{data['index']}",
            "type": "function",
            "function": {"name": data["name"], "arguments": ""},
        }
        return framer.choice({"tool_calls": [head]}) + fragment
    return None
