"""A request leaves no reference cycles behind: nothing for the cyclic collector to find.

Cyclic garbage is what sets off the young-generation collections, and each of those walks every
live object of every request in flight, so its cost per request grows with concurrency.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import ROOT, base_config

REQUESTS = 20  # of each kind: JSON and streamed


def test_chat_completions_leave_no_cyclic_garbage(upstream, tmp_path):
    config = tmp_path / "openclaw.json"
    config.write_text(json.dumps(base_config(upstream)))
    out = tmp_path / "garbage.json"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("OPENCLAW_")},
        "OPENCLAW_STATE_DIR": str(tmp_path / "state"),
    }
    probe = subprocess.run(
        [sys.executable, "-m", "tests.gc_probe", str(config), str(REQUESTS), str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert probe.returncode == 0, probe.stderr[-3000:]
    found = json.loads(out.read_text())
    assert found["unreachable"] == 0, found["types"]
