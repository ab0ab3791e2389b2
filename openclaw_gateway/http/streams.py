"""The SSE streams open in this process: counted, and ended cleanly at the drain deadline.

On SIGTERM the runtime starts draining; ``gateway.drainSeconds`` later every stream still open
gets its deadline (an ``error`` event, then ``[DONE]``) instead of being cut by the server.
"""

from __future__ import annotations

from typing import Any

import gevent
from flask import Flask, current_app
from gevent.queue import Queue

from ..metrics import Metrics
from ..runtime import Gateway

STREAMS_KEY = "openclaw_gateway.streams"
# Put on a stream's event queue: the drain window is over, end the stream now.
DRAIN_DEADLINE = object()


class OpenStreams:
    def __init__(self, metrics: Metrics) -> None:
        self._queues: set[Queue[Any]] = set()
        self._metrics = metrics

    def __len__(self) -> int:
        return len(self._queues)

    def add(self, events: Queue[Any]) -> None:
        self._queues.add(events)
        self._metrics.active_streams.inc()

    def discard(self, events: Queue[Any]) -> None:
        if events in self._queues:
            self._queues.remove(events)
            self._metrics.active_streams.dec()

    def end_all(self) -> None:
        """Tell every open stream its drain window is over."""
        for events in list(self._queues):
            events.put(DRAIN_DEADLINE)


def open_streams() -> OpenStreams:
    return current_app.extensions[STREAMS_KEY]  # type: ignore[no-any-return]


def register_streams(app: Flask, runtime: Gateway) -> None:
    streams = OpenStreams(runtime.metrics)
    app.extensions[STREAMS_KEY] = streams
    window = runtime.settings.gateway.drain_seconds

    def on_drain() -> None:
        gevent.spawn_later(window, streams.end_all)

    runtime.add_drain_listener(on_drain)
