"""The gunicorn entry point leaves the start-up heap out of later garbage collections and
collects the young generation less often."""

from __future__ import annotations

import subprocess
import sys

from openclaw_gateway.server import YOUNG_COLLECTION_THRESHOLD
from tests.conftest import ROOT


def test_wsgi_entry_point_freezes_the_startup_heap(tmp_path):
    code = (
        "from gevent import monkey; monkey.patch_all()\n"
        "import gc, wsgi\n"
        "print(gc.get_freeze_count(), wsgi.application.name, gc.get_threshold()[0])\n"
    )
    env = {"OPENCLAW_STATE_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    frozen, name, young_threshold = out.stdout.split()
    assert name == "openclaw_gateway"
    # Everything the imports and the app built: tens of thousands of objects.
    assert int(frozen) > 10_000
    # Requests leave no cycles to find: the young generation is collected a tenth as often.
    assert int(young_threshold) == YOUNG_COLLECTION_THRESHOLD > 700
