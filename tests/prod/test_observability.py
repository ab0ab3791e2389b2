"""JSON request logs on stdout and Prometheus metrics summed across gunicorn workers."""

from __future__ import annotations

import json
import re

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import TOKEN, base_config, unique, wait_until
from tests.prod.conftest import log_line_for, log_lines, open_stream

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _chat(http, url: str, content: str, **headers: str):
    return http.request(
        "POST",
        url + "/v1/chat/completions",
        body=json.dumps({"messages": [{"role": "user", "content": content}]}),
        headers=AUTH | {"Connection": "close"} | headers,
    )


def _samples(http, url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = http.request("GET", url + "/metrics", headers=AUTH)
    assert response.status == 200
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.data.decode())
        for s in family.samples
    }


def test_metrics_counters_add_up_over_two_workers(upstream, start_gateway, http):
    gw = start_gateway(base_config(upstream), workers=2)
    sent = 0

    def served_by_both() -> bool:
        nonlocal sent
        response = _chat(http, gw.url, "count me")
        assert response.status == 200
        sent += 1
        chats = [r for r in log_lines(gw) if r["path"] == "/v1/chat/completions"]
        return len({r["pid"] for r in chats}) == 2

    wait_until(served_by_both, 30, "both workers to serve a chat")
    requests = (
        "openclaw_http_requests_total",
        (("path", "/v1/chat/completions"), ("status", "200")),
    )
    runs = ("openclaw_runs_total", (("outcome", "ok"),))
    wait_until(lambda: _samples(http, gw.url).get(requests) == sent, 10, f"{sent} requests")
    samples = _samples(http, gw.url)
    assert samples[requests] == sent
    assert samples[runs] == sent
    prompt = ("openclaw_tokens_total", (("kind", "prompt"),))
    assert samples[prompt] > 0


def test_metrics_need_the_gateway_token(gateway, http):
    assert http.request("GET", gateway.url + "/metrics").status == 401
    response = http.request("GET", gateway.url + "/metrics", headers=AUTH)
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    assert b"openclaw_http_requests_total" in response.data


def test_metrics_are_open_when_configured_public(upstream, start_gateway, http):
    config = base_config(upstream)
    config["gateway"]["metrics"] = {"public": True}
    gw = start_gateway(config)
    assert http.request("GET", gw.url + "/metrics").status == 200
    assert http.request("GET", gw.url + "/v1/models").status == 401


def test_request_log_line_has_the_request_fields(gateway, upstream, http):
    request_id = unique("req")
    user = unique("user")
    response = http.request(
        "POST",
        gateway.url + "/v1/chat/completions",
        body=json.dumps({"user": user, "messages": [{"role": "user", "content": "fields"}]}),
        headers=AUTH | {"X-Request-ID": request_id},
    )
    assert response.status == 200
    line = log_line_for(gateway, request_id)
    assert line["method"] == "POST"
    assert line["path"] == "/v1/chat/completions"
    assert line["status"] == 200
    assert line["duration_ms"] >= 0
    assert line["agent"] == "main"
    assert re.fullmatch(r"[0-9a-f]{16}", line["session"])
    assert line["client_ip"] == "127.0.0.1"


def test_no_log_line_contains_the_token_or_the_message_text(gateway, upstream, http):
    secret_text = unique("zebra")
    user = unique("user")
    wrong = unique("wrong-token")
    ok_id, bad_id = unique("req"), unique("req")
    body = {"user": user, "messages": [{"role": "user", "content": secret_text}]}
    response = http.request(
        "POST",
        gateway.url + "/v1/chat/completions?api_key=" + wrong,
        body=json.dumps(body),
        headers=AUTH | {"X-Request-ID": ok_id},
    )
    assert response.status == 200
    response = http.request(
        "POST",
        gateway.url + "/v1/chat/completions",
        body=json.dumps(body),
        headers={"Authorization": f"Bearer {wrong}", "X-Request-ID": bad_id},
    )
    assert response.status == 401
    log_line_for(gateway, ok_id), log_line_for(gateway, bad_id)
    log = gateway.log()
    for leaked in (TOKEN, wrong, secret_text, f"You said: {secret_text}", user, "upstream-secret"):
        assert leaked not in log


def test_logging_content_true_logs_the_message_text(upstream, start_gateway, http):
    config = base_config(upstream)
    config["logging"] = {"content": True}
    gw = start_gateway(config)
    text, request_id = unique("say"), unique("req")
    assert _chat(http, gw.url, text, **{"X-Request-ID": request_id}).status == 200
    line = log_line_for(gw, request_id)
    assert line["input"] == text
    assert line["output"] == f"You said: {text}"
    assert TOKEN not in gw.log()


def test_active_streams_gauge_counts_an_open_stream(gateway, upstream, http):
    gauge = ("openclaw_active_streams", ())
    stream = open_stream(gateway.url, "[[upstream:slow interval=0.3 chunks=4]] gauge")
    stream.next_event()
    assert _samples(http, gateway.url)[gauge] == 1
    assert stream.rest()[-1].data == "[DONE]"
    wait_until(lambda: _samples(http, gateway.url)[gauge] == 0, 10, "the gauge to drop")


def test_upstream_errors_and_failed_runs_are_counted(gateway, upstream, http):
    before = _samples(http, gateway.url)
    response = _chat(http, gateway.url, "[[upstream:error status=500]] fail")
    assert response.status >= 500
    code = json.loads(response.data)["error"]["code"]
    errors = ("openclaw_upstream_errors_total", (("code", code),))
    runs = ("openclaw_runs_total", (("outcome", "error"),))
    after = _samples(http, gateway.url)
    assert after[errors] - before.get(errors, 0) == 1
    assert after[runs] - before.get(runs, 0) == 1
