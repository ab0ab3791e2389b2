"""The per-request figures are counted in the process and reach the Prometheus values in a
flush: what a scrape shows must be what observing each request directly would have shown."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from openclaw_gateway.agent.types import Usage
from openclaw_gateway.metrics import _LATENCY_BUCKETS, Metrics

DURATIONS = [0.0, 0.004, 0.005, 0.0051, 0.3, 1.0, 2.5, 7.0, 299.0, 300.0, 301.0, 1e6]


def _samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text.decode())
        for s in family.samples
        if not s.name.endswith("_created")
    }


def test_metrics_latency_buckets_match_direct_observations():
    metrics = Metrics()
    for seconds in DURATIONS:
        metrics.count_request("/v1/chat/completions", 200, seconds)
    metrics.count_request("/health", 200, 0.001)

    registry = CollectorRegistry()
    direct = Histogram(
        "openclaw_http_request_duration_seconds",
        "direct",
        ["path"],
        buckets=_LATENCY_BUCKETS,
        registry=registry,
    )
    for seconds in DURATIONS:
        direct.labels("/v1/chat/completions").observe(seconds)
    direct.labels("/health").observe(0.001)

    got = _samples(metrics.exposition())
    expected = _samples(generate_latest(registry))
    assert expected  # the comparison below is over real samples
    for key, value in expected.items():
        assert got[key] == value, key


def test_metrics_counts_add_up_over_flushes():
    metrics = Metrics()
    for _ in range(3):
        metrics.count_request("/v1/chat/completions", 200, 0.01)
    metrics.count_request("/v1/chat/completions", 400, 0.01)
    metrics.count_run("ok")
    metrics.count_tokens(Usage(prompt_tokens=10, completion_tokens=2))
    metrics.flush()
    metrics.count_request("/v1/chat/completions", 200, 0.01)
    metrics.count_run("ok")
    metrics.count_run("error")
    metrics.count_tokens(Usage(prompt_tokens=5, completion_tokens=0))

    samples = _samples(metrics.exposition())  # a scrape flushes what is pending first
    path = ("path", "/v1/chat/completions")
    assert samples[("openclaw_http_requests_total", (path, ("status", "200")))] == 4
    assert samples[("openclaw_http_requests_total", (path, ("status", "400")))] == 1
    assert samples[("openclaw_runs_total", (("outcome", "ok"),))] == 2
    assert samples[("openclaw_runs_total", (("outcome", "error"),))] == 1
    assert samples[("openclaw_tokens_total", (("kind", "prompt"),))] == 15
    assert samples[("openclaw_tokens_total", (("kind", "completion"),))] == 2
    assert samples[("openclaw_http_request_duration_seconds_count", (path,))] == 5


def test_metrics_reach_the_values_without_a_scrape():
    """The flusher adds pending counts on its own (another worker's scrape reads the files)."""
    from tests.conftest import wait_until

    metrics = Metrics()
    metrics.count_request("/v1/models", 200, 0.01)
    child = metrics.requests.labels("/v1/models", "200")
    wait_until(lambda: child._value.get() == 1, 5, "the flush")
