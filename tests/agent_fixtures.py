"""Fixtures for the agent runtime tests (tests/test_agent_*.py): one gateway whose agents have
tools, a workspace, an Anthropic model and a fallback chain, plus SSE and CLI helpers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import urllib3

from tests.conftest import ROOT, TOKEN, GatewayProcess, base_config
from tests.upstream import Upstream

SYSTEM_PROMPT = "You are the tool agent."


def agent_config(upstream: Upstream, workspace: Path) -> dict[str, Any]:
    """The standard config plus agents for tools, Anthropic and fallbacks."""
    config = base_config(upstream)
    config["models"]["providers"]["ant"] = {
        "baseUrl": upstream.base_url,
        "apiKey": "anthropic-secret-key",
        "api": "anthropic-messages",
        "models": [{"id": "claude-test"}],
        "timeoutSeconds": 3,
    }
    config["agents"]["list"] += [
        {
            "id": "tooly",
            "systemPrompt": SYSTEM_PROMPT,
            "workspace": str(workspace),
            "tools": {"allow": ["current_time", "group:workspace", "web_fetch"]},
        },
        {"id": "limited", "tools": {"allow": ["current_time"]}, "maxToolRounds": 2},
        {
            "id": "denied",
            "workspace": str(workspace),
            "tools": {"allow": ["*"], "deny": ["web_fetch", "workspace_write"]},
        },
        {
            "id": "claude",
            "model": "ant/claude-test",
            "systemPrompt": "You are Claude here.",
            "tools": {"allow": ["current_time"]},
        },
        {
            "id": "fallback",
            "model": {"primary": "up/primary-model", "fallbacks": ["up/echo-model"]},
        },
    ]
    return config


_SHARED = pytest.StashKey[tuple[GatewayProcess, Path]]()


def _shared(request: pytest.FixtureRequest, upstream: Upstream) -> tuple[GatewayProcess, Path]:
    """Start the agent gateway once per test session, whichever test module asks first.

    Each test module binds these fixtures under its own name, which pytest treats as separate
    fixtures; the config stash keeps them one process.
    """
    stash = request.config.stash
    if _SHARED not in stash:
        factory: pytest.TempPathFactory = request.getfixturevalue("tmp_path_factory")
        workspace = factory.mktemp("workspace")
        (workspace / "hello.txt").write_text("hello from the workspace")
        (workspace / "AGENTS.md").write_text("Agents file.")
        (workspace / "SOUL.md").write_text("Soul file.")
        (workspace / "TOOLS.md").write_text("Tools file.")
        process = GatewayProcess(agent_config(upstream, workspace), factory.mktemp("agentgw"))
        request.config.add_cleanup(process.stop)
        process.start()
        stash[_SHARED] = (process, workspace)
    return stash[_SHARED]


@pytest.fixture(scope="module")
def agent_gateway(request: pytest.FixtureRequest, upstream_server: Upstream) -> GatewayProcess:
    """The gateway with the agent test config (one per session)."""
    return _shared(request, upstream_server)[0]


@pytest.fixture(scope="module")
def agent_workspace(request: pytest.FixtureRequest, upstream_server: Upstream) -> Path:
    """The ``tooly`` agent's workspace folder."""
    return _shared(request, upstream_server)[1]


def post(
    gateway: GatewayProcess, body: dict[str, Any], headers: dict[str, str] | None = None
) -> urllib3.BaseHTTPResponse:
    http = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=5, read=30))
    try:
        return http.request(
            "POST",
            gateway.url + "/v1/chat/completions",
            body=json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
            | (headers or {}),
        )
    finally:
        http.clear()


def sse_payloads(response: urllib3.BaseHTTPResponse) -> list[Any]:
    """The ``data:`` payloads of an SSE body, JSON-decoded (``[DONE]`` kept as the string)."""
    out: list[Any] = []
    for block in response.data.decode().split("\n\n"):
        if block.startswith("data: "):
            data = block[len("data: ") :]
            out.append(data if data == "[DONE]" else json.loads(data))
    return out


def run_cli(gateway: GatewayProcess, *args: str) -> dict[str, Any]:
    """Run ``python -m openclaw_gateway agent ... --json`` on the gateway's config and state."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENCLAW_")}
    env["OPENCLAW_STATE_DIR"] = str(gateway.state_dir)
    done = subprocess.run(
        [sys.executable, "-m", "openclaw_gateway", "--config", str(gateway.config_path), "agent"]
        + list(args)
        + ["--json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    return dict(json.loads(done.stdout.decode().strip().splitlines()[-1]))
