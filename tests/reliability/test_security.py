"""Security: secrets never leave, auth compares in constant time, limits hold, the lockout holds.

Every answer the whole suite receives is also scanned for the secrets (``Figures.observe``) and
the gateway's captured output is checked at the end (``rel_gateway`` teardown).

The agent tools' path and SSRF guards are in ``test_tool_guards.py``, the WS frame caps in
``test_malformed_ws.py``. With Redis sessions the lockout runs once more on two workers sharing the
limiter (``OPENCLAW_TEST_REDIS_URL``; a missing Redis fails under ``CI=true``).
"""

from __future__ import annotations

import base64
import hmac
import http.client
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from openclaw_gateway.config import AuthSettings, RateLimitSettings
from openclaw_gateway.security import auth as auth_module
from openclaw_gateway.security.auth import Guard
from openclaw_gateway.security.limiter import MemoryFailureLimiter
from tests.conftest import ROOT, GatewayProcess, base_config, wait_until
from tests.reliability.conftest import RelGateway, check_log
from tests.reliability.contract import assert_envelope
from tests.reliability.figures import Figures
from tests.reliability.wire import Answer, Client, http_request, raw_exchange
from tests.upstream import Upstream, error

# --------------------------------------------------------------------------- secrets


def test_secrets_never_appear_in_answers_to_any_error(
    rel_gateway: RelGateway, upstream: Upstream, figures: Figures
) -> None:
    gw = rel_gateway
    bodies: list[bytes] = []
    chat = {"model": "openclaw", "messages": [{"role": "user", "content": "secret probe"}]}
    wrong = gw.token[:-4] + "xxxx"
    for headers in (
        {"Authorization": f"Bearer {wrong}"},
        {"Authorization": f"Basic {gw.token}"},
        {"Authorization": f"Bearer {gw.token} {gw.provider_key}"},
    ):
        bodies.append(gw.client.chat(chat, headers, auth=False).body)
    for status in (400, 401, 403, 500):
        figures.injected("upstream: error echoing the provider key")
        # The provider knows its own key (not the gateway's token): it may echo it back.
        rejected = error(status, message=f"key {gw.provider_key} rejected")
        upstream.script(rejected, rejected)
        bodies.append(gw.client.chat(chat).body)
        bodies.append(gw.client.chat(dict(chat, stream=True)).body)
    bodies.append(gw.client.chat({"model": gw.provider_key, "messages": []}).body)
    bodies.append(gw.client.request("GET", "/v1/models/" + gw.token).body)
    for body in bodies:
        assert gw.token.encode() not in body and gw.provider_key.encode() not in body, body
    assert not figures.secret_leaks
    problems = check_log(gw.process, (gw.token, gw.provider_key), workers=1)
    assert not problems, problems


def test_config_check_output_never_shows_secrets(rel_gateway: RelGateway) -> None:
    gw = rel_gateway
    shown = subprocess.run(
        [sys.executable, "-m", "openclaw_gateway", "config", "check"],
        cwd=ROOT,
        env=gw.process.env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert shown.returncode == 0, shown.stderr
    out = shown.stdout + shown.stderr
    assert gw.token not in out and gw.provider_key not in out


def test_debug_runtime_answers_only_with_the_gateway_secret(rel_gateway: RelGateway) -> None:
    gw = rel_gateway
    assert_envelope(gw.client.request("GET", "/debug/runtime", auth=False), 401)
    figures = gw.client.request("GET", "/debug/runtime").json()
    assert set(figures) == {"pid", "greenlets", "rssBytes", "activeRuns"}


# --------------------------------------------------------------------------- constant time


@pytest.mark.parametrize("mode", ["token", "password"])
def test_guard_compares_equal_length_digests_with_compare_digest(
    monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    secret = "s3cret-" + uuid.uuid4().hex
    settings = AuthSettings(mode=mode, token=secret, password=secret)
    guard = Guard(settings, MemoryFailureLimiter(RateLimitSettings()))
    seen: list[tuple[Any, Any]] = []
    compare_digest = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        seen.append((a, b))
        return compare_digest(a, b)

    monkeypatch.setattr(auth_module.hmac, "compare_digest", spy)
    presented = ["", "x", secret[:-1], secret + "x", secret.upper(), "é" * 500, secret]
    verdicts = [guard.matches(p) for p in presented]
    assert verdicts == [False] * 6 + [True]
    assert len(seen) == len(presented), "every check goes through hmac.compare_digest"
    for a, b in seen:
        assert isinstance(a, bytes) and isinstance(b, bytes)
        assert len(a) == len(b) == 32, "digests of equal length, whatever was presented"


# --------------------------------------------------------------------------- limits


@pytest.fixture(scope="module")
def limits_gateway(
    upstream_server: Upstream, tmp_path_factory: pytest.TempPathFactory, figures: Figures
) -> Iterator[tuple[GatewayProcess, Client]]:
    """Start a gateway with small limits (64 KiB body, 2 images of 1 KiB in all)."""
    config = base_config(upstream_server)
    config["gateway"]["http"]["endpoints"]["chatCompletions"].update(
        maxBodyBytes=64 * 1024, images={"maxParts": 2, "maxBytes": 1024}
    )
    process = GatewayProcess(config, tmp_path_factory.mktemp("limits")).start()
    yield process, Client(process.url, figures, "test-token")
    process.stop()


def _image(size: int, mime: str = "image/png") -> dict[str, Any]:
    data = base64.b64encode(b"\x89PNG" + b"\0" * (size - 4)).decode()
    return {"type": "image_url", "image_url": {"url": f"data:{mime};base64,{data}"}}


def _with_parts(*parts: dict[str, Any]) -> dict[str, Any]:
    content = [{"type": "text", "text": "see"}, *parts]
    return {"model": "openclaw", "messages": [{"role": "user", "content": content}]}


def test_limits_body_over_max_is_413_by_length_and_while_chunked(
    limits_gateway: tuple[GatewayProcess, Client], figures: Figures
) -> None:
    process, client = limits_gateway
    figures.tried("limits: body", 3)
    big = json.dumps({"messages": [{"role": "user", "content": "x" * 70_000}]}).encode()
    assert_envelope(client.request("POST", "/v1/chat/completions", big), 413)
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(big), big)
    answer = raw_exchange(
        process.port,
        http_request(
            "POST",
            "/v1/chat/completions",
            [(b"Authorization", b"Bearer test-token"), (b"Transfer-Encoding", b"chunked")],
            chunked,
            content_length=False,
        ),
        figures,
    )
    assert answer is not None
    assert_envelope(answer, 413)
    fits = json.dumps({"messages": [{"role": "user", "content": "x" * 60_000}]}).encode()
    assert client.request("POST", "/v1/chat/completions", fits).status == 200


@pytest.mark.parametrize(
    "parts",
    [
        [_image(100), _image(100), _image(100)],  # more parts than allowed
        [_image(1100)],  # more bytes than allowed
        [_image(600), _image(600)],  # more bytes in all than allowed
        [_image(100, "image/svg+xml")],  # a mime type not allowed
        [{"type": "image_url", "image_url": {"url": "https://169.254.169.254/latest"}}],
        [{"type": "image_url", "image_url": {"url": "data:image/png;base64,%%%"}}],
    ],
    ids=["parts", "bytes", "bytes-in-all", "mime", "url", "bad-base64"],
)
def test_limits_images_beyond_the_limits_are_400(
    limits_gateway: tuple[GatewayProcess, Client], figures: Figures, parts: list[dict[str, Any]]
) -> None:
    _, client = limits_gateway
    figures.tried("limits: images")
    error_ = assert_envelope(client.chat(_with_parts(*parts)), 400)
    assert error_["message"] == "Invalid image_url content in `messages`."


def test_limits_images_within_the_limits_pass(
    limits_gateway: tuple[GatewayProcess, Client], upstream: Upstream, figures: Figures
) -> None:
    _, client = limits_gateway
    figures.tried("limits: images")
    assert client.chat(_with_parts(_image(400), _image(400))).status == 200
    sent = upstream.requests[-1].body["messages"][-1]["content"]
    assert [p["type"] for p in sent] == ["text", "image_url", "image_url"]


def test_limits_header_line_over_64k_is_refused_by_the_server_layer(
    limits_gateway: tuple[GatewayProcess, Client], figures: Figures
) -> None:
    process, _ = limits_gateway
    figures.tried("limits: header line")
    headers = [(b"Authorization", b"Bearer test-token"), (b"X-Big", b"b" * (65 * 1024))]
    answer = raw_exchange(process.port, http_request("GET", "/v1/models", headers), figures)
    assert answer is not None and answer.status == 400 and not answer.from_app, answer


# --------------------------------------------------------------------------- lockout


@pytest.fixture(scope="module")
def lockout_gateway(
    upstream_server: Upstream, tmp_path_factory: pytest.TempPathFactory, figures: Figures
) -> Iterator[tuple[GatewayProcess, Client]]:
    """Start a gateway behind a trusted proxy (the test), so X-Forwarded-For names clients."""
    config = base_config(upstream_server, trustedProxies=["127.0.0.1"])
    config["gateway"]["auth"]["rateLimit"] = {"maxAttempts": 3, "lockoutMs": 600_000}
    process = GatewayProcess(config, tmp_path_factory.mktemp("lockout")).start()
    yield process, Client(process.url, figures, "test-token")
    process.stop()


def _as(ip: str, token: str | None) -> dict[str, str]:
    headers = {"X-Forwarded-For": ip}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return headers


def _fresh_ip() -> str:
    n = uuid.uuid4().int
    return f"198.51.{n % 250}.{(n >> 8) % 250 + 1}"


def test_lockout_holds_against_the_right_secret_and_spoofed_hops(
    lockout_gateway: tuple[GatewayProcess, Client], figures: Figures
) -> None:
    _, client = lockout_gateway
    ip = _fresh_ip()
    figures.injected("auth: wrong secrets until lockout", 3)
    statuses = [
        client.request("GET", "/v1/models", None, _as(ip, "wrong"), auth=False).status
        for _ in range(3)
    ]
    assert statuses == [401, 401, 429]
    locked = client.request("GET", "/v1/models", None, _as(ip, "test-token"), auth=False)
    error_ = assert_envelope(locked, 429)
    assert error_["type"] == "rate_limited"
    assert int(locked.headers["retry-after"]) > 0
    # Another hop added by the client to the left, or the trusted proxy to the right, is still ip.
    for forwarded in (f"203.0.113.9, {ip}", f"{ip}, 127.0.0.1", f" {ip} "):
        again = client.request("GET", "/v1/models", None, _as(forwarded, "test-token"), auth=False)
        assert again.status == 429, (forwarded, again)
    other = client.request("GET", "/v1/models", None, _as(_fresh_ip(), "test-token"), auth=False)
    assert other.status == 200, "the lockout is per client"


def test_missing_credentials_never_lock_a_client_out(
    lockout_gateway: tuple[GatewayProcess, Client], figures: Figures
) -> None:
    _, client = lockout_gateway
    ip = _fresh_ip()
    figures.tried("auth: missing credentials", 10)
    for _ in range(10):
        answer = client.request("GET", "/v1/models", None, _as(ip, None), auth=False)
        assert_envelope(answer, 401)
    ok = client.request("GET", "/v1/models", None, _as(ip, "test-token"), auth=False)
    assert ok.status == 200


def test_success_resets_the_failure_count(
    lockout_gateway: tuple[GatewayProcess, Client], figures: Figures
) -> None:
    _, client = lockout_gateway
    ip = _fresh_ip()
    figures.injected("auth: wrong secrets around a success", 4)
    for token in ("wrong", "wrong", "test-token", "wrong", "wrong"):
        answer = client.request("GET", "/v1/models", None, _as(ip, token), auth=False)
        assert answer.status in (200, 401), answer
    assert (
        client.request("GET", "/v1/models", None, _as(ip, "test-token"), auth=False).status == 200
    )


# --------------------------------------------------------------------------- lockout with Redis

REDIS_URL = os.environ.get("OPENCLAW_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.fixture(scope="module")
def redis_lockout_gateway(
    upstream_server: Upstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    """Two workers sharing the failure limiter in Redis (fail under CI when Redis is missing)."""
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        message = f"no Redis at {REDIS_URL} (set OPENCLAW_TEST_REDIS_URL): {exc}"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    prefix = f"openclaw-rel:{uuid.uuid4().hex[:12]}:"
    config = base_config(upstream_server, trustedProxies=["127.0.0.1"])
    config["gateway"]["auth"]["rateLimit"] = {
        "maxAttempts": 3,
        "lockoutMs": 600_000,
        "exemptLoopback": False,
    }
    config["session"] = {"store": REDIS_URL, "keyPrefix": prefix}
    process = GatewayProcess(config, tmp_path_factory.mktemp("lockout-redis"), workers=2)
    try:
        yield process.start()
    finally:
        process.stop()
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()


def _connection_per_worker(process: GatewayProcess) -> dict[int, http.client.HTTPConnection]:
    """Open keep-alive connections until each of the two workers holds one; key them by pid."""
    held: dict[int, http.client.HTTPConnection] = {}

    def both() -> bool:
        conn = http.client.HTTPConnection("127.0.0.1", process.port, timeout=30)
        pid = _get(conn, "/debug/runtime", _as(_fresh_ip(), "test-token"))
        assert pid.status == 200, pid
        worker = json.loads(pid.body)["pid"]
        if worker in held:
            conn.close()  # the kernel handed it to a worker we hold already: try another
        else:
            held[worker] = conn
        return len(held) == 2

    wait_until(both, 30, "a connection on each worker")
    return held


def _get(conn: http.client.HTTPConnection, path: str, headers: dict[str, str]) -> Answer:
    conn.request("GET", path, headers=headers)
    response = conn.getresponse()
    return Answer(
        response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    )


def test_lockout_with_redis_counts_failures_across_workers_and_holds_on_both(
    redis_lockout_gateway: GatewayProcess, figures: Figures
) -> None:
    workers = _connection_per_worker(redis_lockout_gateway)
    (a, on_a), (b, on_b) = sorted(workers.items())
    ip = _fresh_ip()
    figures.injected("auth: wrong secrets across two workers (Redis)", 3)
    # Alternating workers: neither saw maxAttempts failures itself; only a shared count locks.
    statuses = [
        _get(on_a, "/v1/models", _as(ip, "wrong")).status,
        _get(on_b, "/v1/models", _as(ip, "wrong")).status,
        _get(on_a, "/v1/models", _as(ip, "wrong")).status,
    ]
    assert statuses == [401, 401, 429]
    for pid, conn in ((a, on_a), (b, on_b)):
        locked = _get(conn, "/v1/models", _as(ip, "test-token"))
        figures.observe(locked)
        assert assert_envelope(locked, 429)["type"] == "rate_limited", (pid, locked)
        # The same connection still serves another client: the lockout is per client IP.
        assert _get(conn, "/v1/models", _as(_fresh_ip(), "test-token")).status == 200, pid
    on_a.close()
    on_b.close()
