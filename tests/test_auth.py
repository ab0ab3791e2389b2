"""SPEC 2: auth modes, the bearer header, start-up refusals and the auth-failure limiter."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from tests.conftest import ROOT, TOKEN, GatewayProcess, base_config, free_port
from tests.rawhttp import send

PASSWORD = "correct horse battery staple"
RATE_LIMITED = {
    "message": "Too many failed authentication attempts. Please try again later.",
    "type": "rate_limited",
    "param": None,
    "code": None,
}
MAX_ATTEMPTS = 3


def _models(port: int, authorization: str | None = None, **headers: str):
    if authorization is not None:
        headers["Authorization"] = authorization
    return send(port, "GET", "/v1/models", headers)


def _limited_config(upstream, **gateway: Any) -> dict[str, Any]:
    config = base_config(upstream, **gateway)
    config["gateway"]["auth"]["rateLimit"] = {
        "maxAttempts": MAX_ATTEMPTS,
        "windowMs": 60_000,
        "lockoutMs": 60_000,
        "exemptLoopback": False,
    }
    return config


@pytest.fixture(scope="module")
def password_gateway(upstream_server, tmp_path_factory) -> Iterator[GatewayProcess]:
    """Password mode, the password from OPENCLAW_GATEWAY_PASSWORD."""
    config = base_config(upstream_server)
    config["gateway"]["auth"] = {"mode": "password"}
    process = GatewayProcess(
        config, tmp_path_factory.mktemp("password"), env={"OPENCLAW_GATEWAY_PASSWORD": PASSWORD}
    ).start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def proxied_gateway(upstream_server, tmp_path_factory) -> Iterator[GatewayProcess]:
    """Limiter on loopback too, 127.0.0.1 a trusted proxy: each test uses its own forwarded IPs."""
    config = _limited_config(upstream_server, trustedProxies=["127.0.0.1"])
    process = GatewayProcess(config, tmp_path_factory.mktemp("proxied")).start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def untrusting_gateway(upstream_server, tmp_path_factory) -> Iterator[GatewayProcess]:
    """Limiter on loopback too, no trusted proxies."""
    process = GatewayProcess(
        _limited_config(upstream_server), tmp_path_factory.mktemp("untrusting")
    ).start()
    yield process
    process.stop()


# ---- the header


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER", "bEaReR"])
def test_bearer_scheme_is_case_insensitive(gateway, scheme):
    assert _models(gateway.port, f"{scheme} {TOKEN}").status == 200


def test_sdk_with_the_token_is_accepted(client):
    assert [m.id for m in client.models.list()][:2] == ["openclaw", "openclaw/default"]


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer wrong-token",
        f"Bearer {TOKEN}x",
        f"Bearer {TOKEN[:-1]}",
        f"Token {TOKEN}",
        f"Basic {base64.b64encode(f'user:{TOKEN}'.encode()).decode()}",
        TOKEN,
    ],
)
def test_anything_but_the_right_bearer_is_401(gateway, authorization):
    response = _models(gateway.port, authorization)
    assert response.status == 401
    assert response.json()["error"]["type"] == "unauthorized"


@pytest.mark.parametrize("query", [f"api_key={TOKEN}", f"token={TOKEN}", f"access_token={TOKEN}"])
def test_token_in_query_string_is_401(gateway, query):
    assert send(gateway.port, "GET", f"/v1/models?{query}").status == 401


def test_wrong_tokens_from_loopback_are_not_locked_out_by_default(gateway):
    statuses = {_models(gateway.port, "Bearer nope").status for _ in range(12)}
    assert statuses == {401}
    assert _models(gateway.port, f"Bearer {TOKEN}").status == 200


def test_auth_error_on_chat_is_the_openai_sdk_authentication_error(gateway):
    with pytest.raises(openai.AuthenticationError):
        gateway.client(api_key="wrong").chat.completions.create(
            model="openclaw", messages=[{"role": "user", "content": "hi"}]
        )


# ---- password mode


def test_password_mode_accepts_the_password_as_bearer(password_gateway):
    assert _models(password_gateway.port, f"Bearer {PASSWORD}").status == 200


def test_password_mode_refuses_a_wrong_password(password_gateway):
    assert _models(password_gateway.port, "Bearer wrong").status == 401
    assert _models(password_gateway.port, f"Bearer {TOKEN}").status == 401


def test_password_mode_serves_chat_with_the_sdk(password_gateway, upstream):
    reply = password_gateway.client(api_key=PASSWORD).chat.completions.create(
        model="openclaw", messages=[{"role": "user", "content": "pw"}]
    )
    assert reply.choices[0].message.content == "You said: pw"


# ---- start-up refusals


def _gunicorn_refuses(tmp_path, config: dict[str, Any], env: dict[str, str] | None = None) -> str:
    """Start gunicorn on ``config``; assert it exits non-zero; return its output."""
    path = tmp_path / "openclaw.json"
    path.write_text(json.dumps(config))
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("OPENCLAW_")}
    full_env.pop("PORT", None)
    full_env.update(
        OPENCLAW_CONFIG_PATH=str(path),
        OPENCLAW_STATE_DIR=str(tmp_path / "state"),
        OPENCLAW_GATEWAY_PORT=str(free_port()),
        **(env or {}),
    )
    proc = subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:application"],
        cwd=ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode != 0
    return proc.stdout + proc.stderr


def _one_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    return lines[0]


def test_startup_refuses_token_mode_without_a_token(tmp_path):
    output = _gunicorn_refuses(tmp_path, {"gateway": {"auth": {"mode": "token"}}})
    line = _one_line(output)
    assert line.startswith("openclaw-gateway: gateway.auth.token:")
    assert "token mode needs a token" in line


def test_startup_refuses_password_mode_without_a_password(tmp_path):
    output = _gunicorn_refuses(tmp_path, {"gateway": {"auth": {"mode": "password"}}})
    line = _one_line(output)
    assert line.startswith("openclaw-gateway: gateway.auth.password:")
    assert "password mode needs a password" in line


def test_startup_refuses_mode_none_on_a_non_loopback_bind(tmp_path):
    config = {"gateway": {"bind": "lan", "auth": {"mode": "none"}}}
    line = _one_line(_gunicorn_refuses(tmp_path, config))
    assert line.startswith("openclaw-gateway: gateway.auth.mode:")
    assert "non-loopback" in line


def test_startup_with_no_secret_on_a_non_loopback_bind_is_refused(tmp_path):
    line = _one_line(_gunicorn_refuses(tmp_path, {"gateway": {"bind": "0.0.0.0"}}))
    assert "token mode needs a token" in line


# ---- the failure limiter (each test its own forwarded client IPs)


def _wrong(gateway: GatewayProcess, ip: str):
    return _models(gateway.port, "Bearer wrong", **{"X-Forwarded-For": ip})


def _right(gateway: GatewayProcess, ip: str):
    return _models(gateway.port, f"Bearer {TOKEN}", **{"X-Forwarded-For": ip})


def _lock_out(gateway: GatewayProcess, ip: str) -> None:
    statuses = [_wrong(gateway, ip).status for _ in range(MAX_ATTEMPTS)]
    assert statuses[: MAX_ATTEMPTS - 1] == [401] * (MAX_ATTEMPTS - 1)


def test_wrong_tokens_lead_to_429_with_retry_after(proxied_gateway):
    _lock_out(proxied_gateway, "198.51.100.1")
    response = _wrong(proxied_gateway, "198.51.100.1")
    assert response.status == 429
    assert response.json() == {"error": RATE_LIMITED}
    assert 0 < int(response.headers["retry-after"]) <= 60


def test_a_locked_out_ip_is_refused_even_with_the_right_token(proxied_gateway):
    _lock_out(proxied_gateway, "198.51.100.2")
    response = _right(proxied_gateway, "198.51.100.2")
    assert response.status == 429
    assert response.json() == {"error": RATE_LIMITED}


def test_the_lockout_is_per_forwarded_client_ip(proxied_gateway):
    _lock_out(proxied_gateway, "198.51.100.3")
    assert _right(proxied_gateway, "198.51.100.4").status == 200
    assert _wrong(proxied_gateway, "198.51.100.5").status == 401


def test_missing_credentials_do_not_count(proxied_gateway):
    for _ in range(MAX_ATTEMPTS * 3):
        response = _models(proxied_gateway.port, **{"X-Forwarded-For": "198.51.100.6"})
        assert response.status == 401
    assert _wrong(proxied_gateway, "198.51.100.6").status == 401
    assert _right(proxied_gateway, "198.51.100.6").status == 200


def test_a_success_resets_the_count(proxied_gateway):
    ip = "198.51.100.7"
    for _ in range(3):
        for _ in range(MAX_ATTEMPTS - 1):
            assert _wrong(proxied_gateway, ip).status == 401
        assert _right(proxied_gateway, ip).status == 200


def test_the_lockout_applies_to_chat_completions(proxied_gateway):
    _lock_out(proxied_gateway, "198.51.100.8")
    body = json.dumps({"messages": [{"role": "user", "content": "hi"}]}).encode()
    headers = {"Authorization": f"Bearer {TOKEN}", "X-Forwarded-For": "198.51.100.8"}
    response = send(proxied_gateway.port, "POST", "/v1/chat/completions", headers, body)
    assert response.status == 429
    assert "retry-after" in response.headers


def test_forwarded_for_is_read_right_to_left(proxied_gateway):
    _lock_out(proxied_gateway, "198.51.100.9")
    # The rightmost untrusted hop is the client; what it claims to its left is not trusted.
    assert _right(proxied_gateway, "203.0.113.1, 198.51.100.9").status == 429
    assert _right(proxied_gateway, "198.51.100.9, 203.0.113.2").status == 200


def test_trusted_hops_are_skipped(proxied_gateway):
    _lock_out(proxied_gateway, "198.51.100.10")
    assert _right(proxied_gateway, "198.51.100.10, 127.0.0.1").status == 429


def test_real_ip_is_ignored_without_the_fallback(proxied_gateway):
    for _ in range(MAX_ATTEMPTS):
        _models(proxied_gateway.port, "Bearer wrong", **{"X-Real-IP": "198.51.100.11"})
    # Without X-Forwarded-For the client is the peer (127.0.0.1), which is now locked.
    response = _models(proxied_gateway.port, f"Bearer {TOKEN}", **{"X-Real-IP": "198.51.100.12"})
    assert response.status == 429
    assert _right(proxied_gateway, "198.51.100.13").status == 200


def test_forwarded_for_is_ignored_from_an_untrusted_peer(untrusting_gateway):
    for n in range(MAX_ATTEMPTS):
        _wrong(untrusting_gateway, f"192.0.2.{n + 1}")
    # Every failure counted against the peer, 127.0.0.1, whatever it claimed to forward.
    assert _right(untrusting_gateway, "192.0.2.99").status == 429
    assert _models(untrusting_gateway.port, f"Bearer {TOKEN}").status == 429
