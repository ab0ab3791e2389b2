"""gunicorn settings: ``gunicorn -c gunicorn.conf.py wsgi:application``.

Bind and workers come from the environment (``$PORT``/``$WEB_CONCURRENCY`` on a PaaS) or the
config file; the reasons for each setting are beside it.
"""

import os
import sys

from openclaw_gateway.config import ConfigError, describe_startup, load_settings

try:
    _settings = load_settings()
except ConfigError as exc:
    # One clear line, and no half-started server.
    print(f"openclaw-gateway: {exc}", file=sys.stderr)
    sys.exit(2)

# What was loaded, as app.py prints it: auth mode, agents, providers, and the one line naming
# the config keys this gateway ignores (printed once, by the master).
for _line in describe_startup(_settings):
    print(f"openclaw-gateway: {_line}", file=sys.stderr, flush=True)

# gevent-websocket's worker with our fixes (access log, close codes, frame cap): one greenlet per
# request or socket, so thousands of idle streams cost memory, not threads.
worker_class = "openclaw_gateway.server.GatewayWorker"
bind = (
    f"[{_settings.gateway.host}]:{_settings.gateway.port}"
    if ":" in _settings.gateway.host
    else f"{_settings.gateway.host}:{_settings.gateway.port}"
)
workers = int(os.environ.get("WEB_CONCURRENCY", "1"))
# The default of 1000 makes connection 1001 wait silently; streams and sockets are long-lived.
worker_connections = 2000
# gevent patches in the worker before the app loads: preloading in the master would import
# Flask and urllib3 unpatched.
preload_app = False
# gunicorn 25+ opens a control socket per user: parallel instances (tests) would collide.
control_socket_disable = True
# Workers heartbeat from the hub; a worker blocked this long is stuck, not busy streaming.
timeout = 60
# Above gateway.drainSeconds, so a drain finishes before gunicorn kills the worker.
graceful_timeout = int(_settings.gateway.drain_seconds) + 10
keepalive = 75  # above typical proxy idle timeouts (nginx 60 s), so proxies close first
