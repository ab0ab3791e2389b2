"""Prometheus metrics (SPEC 6): one ``Metrics`` per process, summed across gunicorn workers.

Under gunicorn, ``gunicorn.conf.py`` points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh directory
before the workers fork, so every worker writes its figures to files there and a scrape on any
worker adds them up (gauges of live figures use ``livesum``: a dead worker's streams are gone).
Without that directory (``python app.py``, unit tests) the figures are this process's own.

The per-request figures (requests, latency, runs, tokens) are kept as plain counts and added to
the Prometheus values once a second (and before every scrape and at exit): in multiprocess
mode every increment is a lock, a ``getpid`` and an mmap write, six of them per chat request.
A scrape on another worker sees this one's figures at most ``FLUSH_SECONDS`` late.
"""

from __future__ import annotations

import atexit
import threading
import time
from bisect import bisect_left

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from .agent.types import Usage

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Chat runs take seconds; probes take microseconds: buckets cover both ends.
_LATENCY_BUCKETS = (0.005, 0.025, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
FLUSH_SECONDS = 1.0


class Metrics:
    """The gateway's counters, gauges and histograms, and their text exposition."""

    def __init__(self, multiprocess_dir: str = "") -> None:
        self.multiprocess_dir = multiprocess_dir
        # In multiprocess mode the values live in files; a registry here would only see this
        # process, so metrics are created unregistered and a scrape collects from the files.
        self._registry = None if multiprocess_dir else CollectorRegistry()
        registry = self._registry
        self.requests = Counter(
            "openclaw_http_requests",
            "HTTP requests answered, by route and status.",
            ["path", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "openclaw_http_request_duration_seconds",
            "Time from request to the last byte of the response (streams included), by route.",
            ["path"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.active_streams = Gauge(
            "openclaw_active_streams",
            "SSE chat completion streams open now.",
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.active_sockets = Gauge(
            "openclaw_active_sockets",
            "WebSocket connections open now.",
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.runs = Counter(
            "openclaw_runs",
            "Agent runs, by outcome (ok, error, cancelled, refused).",
            ["outcome"],
            registry=registry,
        )
        self.upstream_errors = Counter(
            "openclaw_upstream_errors",
            "Failed model provider calls, by error code.",
            ["code"],
            registry=registry,
        )
        self.tokens = Counter(
            "openclaw_tokens",
            "Tokens reported by the model providers, by kind (prompt, completion).",
            ["kind"],
            registry=registry,
        )

        # Counts since the last flush. Recording and flushing never yield to another greenlet,
        # and the lock keeps them apart where real threads share a process (CLI, unit tests).
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, int], int] = {}
        # Per route: [sum of seconds, count per bucket (the last one is +Inf)].
        self._latencies: dict[str, list[float]] = {}
        self._runs: dict[str, int] = {}
        self._tokens = [0, 0]  # prompt, completion
        self._flusher: threading.Thread | None = None

    def count_request(self, route: str, status: int, seconds: float) -> None:
        """One answered HTTP request: its route (the URL rule, or ``other``), status, duration."""
        with self._lock:
            key = (route, status)
            self._requests[key] = self._requests.get(key, 0) + 1
            latency = self._latencies.get(route)
            if latency is None:
                latency = self._latencies[route] = [0.0] * (len(_LATENCY_BUCKETS) + 2)
            latency[0] += seconds
            # Prometheus counts an observation in the first bucket whose bound is >= it.
            latency[1 + bisect_left(_LATENCY_BUCKETS, seconds)] += 1
        if self._flusher is None:
            self._start_flusher()

    def count_run(self, outcome: str) -> None:
        """One agent run ended (or was refused): ``ok``, ``error``, ``cancelled``, ``refused``."""
        with self._lock:
            self._runs[outcome] = self._runs.get(outcome, 0) + 1
        if self._flusher is None:
            self._start_flusher()

    def count_tokens(self, usage: Usage) -> None:
        with self._lock:
            self._tokens[0] += usage.prompt_tokens
            self._tokens[1] += usage.completion_tokens

    def flush(self) -> None:
        """Add the counts since the last flush to the Prometheus values."""
        with self._lock:
            requests, self._requests = self._requests, {}
            latencies, self._latencies = self._latencies, {}
            runs, self._runs = self._runs, {}
            tokens, self._tokens = self._tokens, [0, 0]
        for (route, status), count in requests.items():
            self.requests.labels(route, str(status)).inc(count)
        for route, (total, *buckets) in latencies.items():
            # A histogram child has no public "add n observations"; its values are these two
            # (prometheus-client is pinned; test_metrics_latency_buckets_match guards them).
            child = self.latency.labels(route)
            child._sum.inc(total)
            for bucket, observed in zip(child._buckets, buckets, strict=True):
                if observed:
                    bucket.inc(observed)
        for outcome, runs_ended in runs.items():
            self.runs.labels(outcome).inc(runs_ended)
        for kind, reported in zip(("prompt", "completion"), tokens, strict=True):
            if reported:
                self.tokens.labels(kind).inc(reported)

    def _start_flusher(self) -> None:
        # Started by the first figure, i.e. in the worker (after the fork and gevent's patching),
        # as a thread: a greenlet under gevent, and metrics.py stays free of gevent.
        with self._lock:
            if self._flusher is not None:
                return
            self._flusher = threading.Thread(
                target=self._flush_every, name="metrics-flush", daemon=True
            )
        self._flusher.start()
        atexit.register(self.flush)

    def _flush_every(self) -> None:
        while True:
            time.sleep(FLUSH_SECONDS)
            self.flush()

    def exposition(self) -> bytes:
        """The Prometheus text format, summed over every worker in multiprocess mode."""
        self.flush()
        if self._registry is not None:
            return generate_latest(self._registry)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=self.multiprocess_dir)
        return generate_latest(registry)
