"""Interop: the npm client ``openclaw-node``, unchanged, against this gateway.

It connects (challenge, protocol 4, token plus a signed v2 device identity of its own), calls
``health`` and runs a chat through the ``agent`` method. The package is installed once per
version under ``/tmp/openclaw-node-cache/<version>``. Under ``CI=true`` missing node/npm fail.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.conftest import TOKEN, GatewayProcess, unique
from tests.wsclient import connected, ws_url

PACKAGE = "openclaw-node"
VERSION = "0.14.0"
CACHE = Path(tempfile.gettempdir()) / "openclaw-node-cache"

SCRIPT = r"""
const { OpenClawClient } = require(process.env.OPENCLAW_NODE_PATH);
(async () => {
  const client = new OpenClawClient({
    url: process.env.GATEWAY_URL, token: process.env.GATEWAY_TOKEN, autoReconnect: false,
  });
  client.on("error", (e) => console.error("client error:", e.message));
  const hello = await client.connect();
  const health = await client.health();
  const reply = await client.chatSync("hello from node", { sessionKey: process.env.SESSION_KEY });
  console.log(JSON.stringify({ protocol: hello.protocol, methods: client.availableMethods, health, reply }));
  await client.disconnect();
  process.exit(0);
})().catch((e) => { console.error("FAILED", (e && e.stack) || e); process.exit(1); });
"""


def _tools() -> tuple[str, str]:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node and npm:
        return node, npm
    if os.environ.get("CI") == "true":
        pytest.fail("node and npm are required for the openclaw-node interop test under CI")
    pytest.skip("node/npm not installed")


def _install(npm: str) -> Path:
    """The package folder, installed from npm once per version (atomic rename)."""
    target = CACHE / VERSION
    package = target / "node_modules" / PACKAGE
    if (package / "package.json").is_file():
        return package
    CACHE.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=CACHE, prefix="install-"))
    (staging / "package.json").write_text('{"private": true}')
    subprocess.run(
        [npm, "install", "--no-audit", "--no-fund", "--loglevel=error", f"{PACKAGE}@{VERSION}"],
        cwd=staging,
        check=True,
        capture_output=True,
        timeout=300,
    )
    try:
        staging.rename(target)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)  # another run installed it first
    return package


def _node_flags(node: str) -> list[str]:
    # The client needs a global WebSocket: built in from Node 22, behind a flag on Node 20/21.
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=True)
    major = int(version.stdout.strip().lstrip("v").split(".")[0])
    return ["--experimental-websocket"] if major < 22 else []


def test_openclaw_node_connects_checks_health_and_chats(
    gateway: GatewayProcess, tmp_path: Path
) -> None:
    node, npm = _tools()
    package = _install(npm)
    script = tmp_path / "client.js"
    script.write_text(SCRIPT)
    session = unique("node")
    env = {
        **os.environ,
        "HOME": str(tmp_path),  # the client keeps its device identity under ~/.openclaw
        "OPENCLAW_NODE_PATH": str(package),
        "GATEWAY_URL": ws_url(gateway.url).rstrip("/"),
        "GATEWAY_TOKEN": TOKEN,
        "SESSION_KEY": session,
    }
    done = subprocess.run(
        [node, *_node_flags(node), str(script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["protocol"] == 4
    assert "agent" in result["methods"]
    assert result["health"]["ok"] is True
    assert result["reply"] == "You said: hello from node"
    # The chat went through run_agent into the shared transcript.
    ws = connected(ws_url(gateway.url))
    history = ws.call("chat.history", {"sessionKey": session})["payload"]["messages"]
    ws.close()
    assert [m["role"] for m in history] == ["user", "assistant"]
    assert history[0]["content"][0]["text"] == "hello from node"
