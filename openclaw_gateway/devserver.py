"""The development server (``python app.py``, ``python -m openclaw_gateway serve``).

gevent's ``WSGIServer`` with the project's handler and a TCP_NODELAY listener; gevent must have
patched before this module is imported (both entry points patch as their first statement).
"""

from __future__ import annotations

import sys

from gevent.pywsgi import WSGIServer

from . import create_app
from .config import Settings, describe_startup
from .server import DevHandler, dev_listener, freeze_startup_heap


def serve(settings: Settings, port: int | None = None) -> int:
    """Serve until interrupted; return the process exit code."""
    app = create_app(settings)
    freeze_startup_heap()
    host, port = settings.gateway.host, port or settings.gateway.port
    try:
        listener = dev_listener(host, port)
    except OSError as exc:
        print(f"openclaw-gateway: cannot listen on {host}:{port}: {exc.strerror}", file=sys.stderr)
        return 2
    print(f"openclaw-gateway listening on http://{host}:{listener.getsockname()[1]}", flush=True)
    for line in describe_startup(settings):
        print(f"  {line}", flush=True)
    try:
        WSGIServer(listener, app, handler_class=DevHandler, log=None).serve_forever()
    except KeyboardInterrupt:
        pass
    return 0
