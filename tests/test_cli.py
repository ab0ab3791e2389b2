"""The command line: ``agent`` through the same run_agent, ``config check``, ``sessions``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.cli_run import run_cli
from tests.conftest import base_config


@pytest.fixture
def bare_env(tmp_path) -> dict[str, str]:
    """No config anywhere: a fresh state dir and home, no OPENCLAW_* variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENCLAW_")}
    env.pop("PORT", None)
    env.pop("REDIS_URL", None)
    env.update(OPENCLAW_STATE_DIR=str(tmp_path / "state"), HOME=str(tmp_path))
    return env


@pytest.fixture
def upstream_env(bare_env, tmp_path, upstream) -> dict[str, str]:
    """A config whose default agent talks to the test upstream."""
    path = tmp_path / "openclaw.json"
    path.write_text(json.dumps(base_config(upstream)))
    return {**bare_env, "OPENCLAW_CONFIG_PATH": str(path)}


def test_agent_with_no_config_answers_with_echo(bare_env):
    proc = run_cli(bare_env, "agent", "--message", "hi")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "echo: hi\n"


def test_agent_stream_prints_the_reply_as_it_comes(bare_env):
    proc = run_cli(bare_env, "agent", "--message", "hi there", "--stream")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "echo: hi there\n"


def test_agent_json_output(bare_env):
    proc = run_cli(bare_env, "agent", "-m", "hi", "--json")
    result = json.loads(proc.stdout)
    assert result["text"] == "echo: hi"
    assert result["finishReason"] == "stop"
    assert result["sessionKey"].startswith("agent:main:openai:")
    assert result["usage"]["total_tokens"] > 0


def test_agent_reaches_the_configured_upstream(upstream_env, upstream):
    proc = run_cli(upstream_env, "agent", "--message", "via cli")
    assert proc.stdout == "You said: via cli\n"
    assert upstream.requests[-1].body["messages"] == [{"role": "user", "content": "via cli"}]


def test_agent_option_picks_the_agent(upstream_env, upstream):
    run_cli(upstream_env, "agent", "--agent", "writer", "--message", "edit")
    assert upstream.requests[-1].body["messages"][0] == {
        "role": "system",
        "content": "You are a careful editor.",
    }


def test_session_key_remembers(upstream_env, upstream):
    run_cli(upstream_env, "agent", "--session-key", "cli-key", "--message", "first")
    run_cli(upstream_env, "agent", "--session-key", "cli-key", "--message", "second")
    assert [(m["role"], m["content"]) for m in upstream.requests[-1].body["messages"]] == [
        ("user", "first"),
        ("assistant", "You said: first"),
        ("user", "second"),
    ]
    shown = run_cli(upstream_env, "sessions", "show", "cli-key").stdout.splitlines()
    assert [json.loads(line)["text"] for line in shown] == [
        "first",
        "You said: first",
        "second",
        "You said: second",
    ]
    assert "cli-key" in run_cli(upstream_env, "sessions", "list").stdout


def test_sessions_delete_forgets_the_transcript(upstream_env, upstream):
    run_cli(upstream_env, "agent", "--session-key", "cli-delete", "--message", "hello")
    assert run_cli(upstream_env, "sessions", "delete", "cli-delete").returncode == 0
    again = run_cli(upstream_env, "sessions", "show", "cli-delete")
    assert again.returncode == 1
    assert again.stderr.strip() == "no session cli-delete"
    assert run_cli(upstream_env, "sessions", "delete", "cli-delete").returncode == 1


def test_without_session_key_nothing_is_stored(bare_env):
    run_cli(bare_env, "agent", "--message", "forget me")
    assert run_cli(bare_env, "sessions", "list").stdout == ""


def test_agent_reports_an_upstream_failure_on_stderr(upstream_env):
    proc = run_cli(upstream_env, "agent", "--message", "[[upstream:error status=500]]")
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr.startswith("error: The model provider returned HTTP 500")


def test_config_check_on_a_good_file(bare_env, tmp_path):
    path = tmp_path / "good.json5"
    path.write_text("{gateway: {auth: {token: 't'}}, update: {auto: {enabled: false}}}")
    proc = run_cli(bare_env, "config", "check", "--config", str(path))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == f"config ok: {path}"
    assert "ignoring config keys this gateway does not use: update" in proc.stdout


def test_config_check_with_no_file(bare_env):
    proc = run_cli(bare_env, "config", "check")
    assert proc.returncode == 0
    assert proc.stdout.splitlines()[0] == "config ok: no file (built-in defaults)"


def test_config_check_on_a_bad_file_is_exit_2_and_one_line(bare_env, tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"gateway": {"port": "eighty"}}))
    proc = run_cli(bare_env, "--config", str(path), "config", "check")
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr == "openclaw-gateway: gateway.port: expected integer, received string\n"


def test_config_check_on_a_missing_file_is_exit_2(bare_env, tmp_path):
    proc = run_cli(bare_env, "config", "check", "--config", str(Path(tmp_path) / "nope.json"))
    assert proc.returncode == 2
    assert len(proc.stderr.splitlines()) == 1
