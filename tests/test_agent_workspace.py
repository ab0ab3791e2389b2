"""Workspace tools stay inside the agent's folder; the workspace files shape the system prompt."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from openclaw_gateway.agent.prompt import WORKSPACE_FILE_MAX, WorkspacePrompts
from openclaw_gateway.agent.tools import BUILTIN_TOOLS, ToolContext, run_tool
from openclaw_gateway.agent.tools.workspace import WRITE_MAX
from openclaw_gateway.agent.types import CancelToken
from tests import agent_fixtures
from tests.agent_fixtures import SYSTEM_PROMPT, post
from tests.upstream import reply, tool_call

agent_gateway = agent_fixtures.agent_gateway
agent_workspace = agent_fixtures.agent_workspace


@pytest.fixture
def layout(tmp_path: Path) -> tuple[Path, Path]:
    """A workspace beside a folder outside it that holds a secret."""
    workspace = tmp_path / "ws"
    outside = tmp_path / "outside"
    workspace.mkdir()
    outside.mkdir()
    (outside / "secret.txt").write_text("top secret")
    (workspace / "inside.txt").write_text("fine")
    return workspace, outside


def _call(workspace: Path, tool: str, **args: object) -> tuple[str, bool]:
    context = ToolContext(workspace=str(workspace), cancel=CancelToken())
    return run_tool(BUILTIN_TOOLS[tool], json.dumps(args), context)


def test_read_inside_the_workspace_works(layout):
    workspace, _ = layout
    assert _call(workspace, "workspace_read", path="inside.txt") == ("fine", False)


def test_dotdot_path_is_refused(layout):
    workspace, _ = layout
    text, is_error = _call(workspace, "workspace_read", path="../outside/secret.txt")
    assert is_error and "'..' is refused" in text
    text, is_error = _call(workspace, "workspace_write", path="sub/../../x.txt", content="x")
    assert is_error and "'..' is refused" in text
    assert not (workspace.parent / "x.txt").exists()


def test_absolute_path_is_refused(layout):
    workspace, outside = layout
    for path in (str(outside / "secret.txt"), "~/secret.txt", "C:/secret.txt"):
        text, is_error = _call(workspace, "workspace_read", path=path)
        assert is_error and "absolute paths are refused" in text
    text, is_error = _call(workspace, "workspace_write", path=str(outside / "new.txt"), content="x")
    assert is_error and not (outside / "new.txt").exists()


def test_symlink_to_outside_is_refused_for_read_write_and_list(layout):
    workspace, outside = layout
    (workspace / "link.txt").symlink_to(outside / "secret.txt")
    (workspace / "linkdir").symlink_to(outside, target_is_directory=True)
    for tool, args in (
        ("workspace_read", {"path": "link.txt"}),
        ("workspace_read", {"path": "linkdir/secret.txt"}),
        ("workspace_write", {"path": "link.txt", "content": "pwned"}),
        ("workspace_write", {"path": "linkdir/new.txt", "content": "pwned"}),
        ("workspace_list", {"path": "linkdir"}),
    ):
        text, is_error = _call(workspace, tool, **args)
        assert is_error and "outside the workspace" in text, (tool, args, text)
    assert (outside / "secret.txt").read_text() == "top secret"
    assert not (outside / "new.txt").exists()


def test_symlink_inside_the_workspace_is_followed(layout):
    workspace, _ = layout
    (workspace / "alias.txt").symlink_to(workspace / "inside.txt")
    assert _call(workspace, "workspace_read", path="alias.txt") == ("fine", False)


def test_oversize_write_is_refused(layout):
    workspace, _ = layout
    text, is_error = _call(
        workspace, "workspace_write", path="big.txt", content="x" * (WRITE_MAX + 1)
    )
    assert is_error and "too large" in text
    assert not (workspace / "big.txt").exists()


def test_write_creates_folders_and_list_shows_them(layout):
    workspace, _ = layout
    assert _call(workspace, "workspace_write", path="a/b/c.txt", content="hey") == (
        "wrote 3 bytes to a/b/c.txt",
        False,
    )
    listing, is_error = _call(workspace, "workspace_list", path="a/b")
    assert not is_error and json.loads(listing) == [{"name": "c.txt", "type": "file", "size": 3}]


def test_escape_attempt_through_the_gateway_reaches_the_model_as_an_error(
    agent_gateway, agent_workspace, upstream
):
    upstream.script(
        tool_call("workspace_write", '{"path": "/tmp/evil.txt", "content": "x"}', call_id="w1"),
        reply("refused"),
    )
    post(agent_gateway, {"model": "openclaw/tooly", "messages": [{"role": "user", "content": "w"}]})
    result = upstream.requests[-1].body["messages"][-1]
    assert result["tool_call_id"] == "w1"
    assert result["content"].startswith("Error: absolute paths are refused")


# --------------------------------------------------------------------------- system prompt


def test_system_prompt_is_config_then_workspace_files_then_request_system(agent_gateway, upstream):
    post(
        agent_gateway,
        {
            "model": "openclaw/tooly",
            "messages": [
                {"role": "system", "content": "Extra from the client."},
                {"role": "user", "content": "hi"},
            ],
        },
    )
    system = upstream.requests[-1].body["messages"][0]
    assert system == {
        "role": "system",
        "content": f"{SYSTEM_PROMPT}\n\nAgents file.\n\nSoul file.\n\nTools file.\n\n"
        "Extra from the client.",
    }


def test_workspace_prompt_files_are_reread_only_when_changed(tmp_path: Path):
    prompts = WorkspacePrompts(recheck_seconds=0)
    (tmp_path / "USER.md").write_text("user v1")
    assert prompts.text(str(tmp_path)) == "user v1"
    (tmp_path / "IDENTITY.md").write_text("identity")
    (tmp_path / "USER.md").write_text("user version 2")
    assert prompts.text(str(tmp_path)) == "user version 2\n\nidentity"
    # Same size and mtime: the cached text is served without reading the file again.
    stat = (tmp_path / "USER.md").stat()
    (tmp_path / "USER.md").write_text("USER VERSION 2")
    os.utime(tmp_path / "USER.md", ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert prompts.text(str(tmp_path)).startswith("user version 2")
    (tmp_path / "USER.md").unlink()
    assert prompts.text(str(tmp_path)) == "identity"


def test_workspace_prompt_file_is_size_capped_and_outside_symlinks_ignored(tmp_path: Path):
    workspace = tmp_path / "ws"
    workspace.mkdir()
    (workspace / "AGENTS.md").write_text("a" * (WORKSPACE_FILE_MAX + 100))
    (tmp_path / "secret.md").write_text("secret")
    (workspace / "SOUL.md").symlink_to(tmp_path / "secret.md")
    text = WorkspacePrompts(recheck_seconds=0).text(str(workspace))
    assert text == "a" * WORKSPACE_FILE_MAX


def test_workspace_prompt_files_are_checked_at_most_once_per_interval(tmp_path: Path):
    prompts = WorkspacePrompts(recheck_seconds=3600)
    (tmp_path / "AGENTS.md").write_text("first")
    assert prompts.text(str(tmp_path)) == "first"
    (tmp_path / "AGENTS.md").write_text("second, longer")
    assert prompts.text(str(tmp_path)) == "first"
