"""The per-process registry of WebSocket runs as a unit: what it remembers stays bounded."""

from __future__ import annotations

from typing import Any

from openclaw_gateway.ws.runs import Run, RunRegistry


def _run(run_id: str, *, done: bool) -> Run:
    owner: Any = None
    run = Run(run_id, "chat.send", "agent:main:main", owner, 0, run_id)
    if done:
        run.finish("ok", 1)
    return run


def test_a_long_running_run_does_not_keep_finished_runs_alive() -> None:
    runs = RunRegistry(keep=3)
    runs.add(_run("long", done=False))
    for i in range(50):
        runs.add(_run(f"r{i}", done=True))
    assert runs.get("long") is not None, "a running run is never forgotten"
    assert runs.by_key("chat.send", "long") is not None
    assert runs.get("r0") is None
    assert runs.get("r49") is not None
    assert len(runs._by_id) <= 4
    assert len(runs._by_key) <= 4
