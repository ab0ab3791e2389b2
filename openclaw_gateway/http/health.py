"""Liveness and readiness probes (SPEC 6): no auth; liveness does no I/O."""

from __future__ import annotations

import gc
import json
import os
import time

from flask import Blueprint, Response
from greenlet import greenlet

from .context import gateway
from .errors import JSON_TYPE
from .hooks import public

bp = Blueprint("health", __name__)

# Compact separators: the exact bytes OpenClaw sends, so probes that match on a string still pass.
_COMPACT = (",", ":")
_LIVE = json.dumps({"ok": True, "status": "live"}, separators=_COMPACT).encode()


def _json(status: int, body: bytes) -> Response:
    response = Response(body, status=status, content_type=JSON_TYPE)
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.route("/health", methods=["GET", "HEAD"], provide_automatic_options=False)
@bp.route("/healthz", methods=["GET", "HEAD"], provide_automatic_options=False)
@public
def live() -> Response:
    return _json(200, _LIVE)


@bp.route("/ready", methods=["GET", "HEAD"], provide_automatic_options=False)
@bp.route("/readyz", methods=["GET", "HEAD"], provide_automatic_options=False)
@public
def ready() -> Response:
    runtime = gateway()
    failing = runtime.ready()
    if failing:
        body = {"ready": False, "failing": failing}
        return _json(503, json.dumps(body, separators=_COMPACT).encode())
    # OpenClaw's fields first (`failing` always present, `uptimeMs`), then this gateway's own.
    body = {
        "ready": True,
        "failing": [],
        "uptimeMs": int((time.time() - runtime.started_at) * 1000),
        "activeRuns": runtime.active_runs,
        "instance": runtime.instance_id,
    }
    return _json(200, json.dumps(body, separators=_COMPACT).encode())


def _rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


@bp.route("/debug/runtime", methods=["GET"], provide_automatic_options=False)
def runtime_figures() -> Response:
    """Report this worker's pid, live greenlets, RSS and active runs (auth required).

    The reliability suite uses it to show that faults and load leave nothing behind; counting
    greenlets walks the heap, so it is for tests and operators, not for probes.
    """
    greenlets = sum(1 for obj in gc.get_objects() if isinstance(obj, greenlet) and not obj.dead)
    body = {
        "pid": os.getpid(),
        "greenlets": greenlets,
        "rssBytes": _rss_bytes(),
        "activeRuns": gateway().active_runs,
    }
    return _json(200, json.dumps(body).encode())
