"""Run ``python -m openclaw_gateway`` the way a user would, against a test gateway's state."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from tests.conftest import ROOT, GatewayProcess


def run_cli(
    env: dict[str, str], *args: str, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "openclaw_gateway", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def transcript(gateway: GatewayProcess, session_key: str) -> list[dict[str, Any]]:
    """The stored transcript of ``session_key`` (``sessions show``), one entry per line."""
    proc = run_cli(gateway.env, "sessions", "show", session_key)
    if proc.returncode == 1 and proc.stderr.startswith("no session"):
        return []
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]


def session_keys(gateway: GatewayProcess) -> list[str]:
    """Every stored session key (``sessions list``)."""
    proc = run_cli(gateway.env, "sessions", "list")
    assert proc.returncode == 0, proc.stderr
    return [line.split("\t")[0] for line in proc.stdout.splitlines() if line.strip()]
