"""Prometheus metrics (SPEC 6): one ``Metrics`` per process, summed across gunicorn workers.

Under gunicorn, ``gunicorn.conf.py`` points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh directory
before the workers fork, so every worker writes its figures to files there and a scrape on any
worker adds them up (gauges of live figures use ``livesum``: a dead worker's streams are gone).
Without that directory (``python app.py``, unit tests) the figures are this process's own.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from .agent.types import Usage

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Chat runs take seconds; probes take microseconds: buckets cover both ends.
_LATENCY_BUCKETS = (0.005, 0.025, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


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

        # ``labels()`` validates and looks up its arguments on every call (a lock, a tuple, a
        # dict): the children of the per-request metrics are kept here instead. Their label
        # values are few (routes, statuses, outcomes), so these never grow large.
        self._request_counts: dict[tuple[str, int], Any] = {}
        self._latencies: dict[str, Any] = {}
        self._runs: dict[str, Any] = {}
        self._prompt_tokens = self.tokens.labels("prompt")
        self._completion_tokens = self.tokens.labels("completion")

    def count_request(self, route: str, status: int, seconds: float) -> None:
        """One answered HTTP request: its route (the URL rule, or ``other``), status, duration."""
        counter = self._request_counts.get((route, status))
        if counter is None:
            counter = self._request_counts[(route, status)] = self.requests.labels(
                route, str(status)
            )
        counter.inc()
        latency = self._latencies.get(route)
        if latency is None:
            latency = self._latencies[route] = self.latency.labels(route)
        latency.observe(seconds)

    def count_run(self, outcome: str) -> None:
        """One agent run ended (or was refused): ``ok``, ``error``, ``cancelled``, ``refused``."""
        counter = self._runs.get(outcome)
        if counter is None:
            counter = self._runs[outcome] = self.runs.labels(outcome)
        counter.inc()

    def count_tokens(self, usage: Usage) -> None:
        if usage.prompt_tokens:
            self._prompt_tokens.inc(usage.prompt_tokens)
        if usage.completion_tokens:
            self._completion_tokens.inc(usage.completion_tokens)

    def exposition(self) -> bytes:
        """The Prometheus text format, summed over every worker in multiprocess mode."""
        if self._registry is not None:
            return generate_latest(self._registry)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=self.multiprocess_dir)
        return generate_latest(registry)
