"""gunicorn settings: ``gunicorn -c gunicorn.conf.py wsgi:application``.

Bind and workers come from the environment (``$PORT``/``$WEB_CONCURRENCY`` on a PaaS) or the
config file; the reasons for each setting are beside it.
"""

import glob
import os
import shutil
import sys
import tempfile

from openclaw_gateway.config import ConfigError, describe_startup, load_settings

try:
    _settings = load_settings()
except ConfigError as exc:
    # One clear line, and no half-started server.
    print(f"openclaw-gateway: {exc}", file=sys.stderr)
    sys.exit(2)
for _line in describe_startup(_settings):
    print(f"openclaw-gateway: {_line}", file=sys.stderr, flush=True)

# gevent-websocket's worker with our fixes (access log, close codes, frame cap, drain on
# SIGTERM): one greenlet per request or socket, so thousands of idle streams cost memory, not
# threads.
worker_class = "openclaw_gateway.server.GatewayWorker"
# $PORT on a PaaS (config.py then binds all interfaces), else the config's port and bind.
bind = (
    f"[{_settings.gateway.host}]:{_settings.gateway.port}"
    if ":" in _settings.gateway.host
    else f"{_settings.gateway.host}:{_settings.gateway.port}"
)
# $WEB_CONCURRENCY is what PaaS platforms set per dyno size; one gevent worker per core is
# the usual pick, since a worker is one core however many connections it holds.
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
# Above gateway.drainSeconds: on SIGTERM a worker drains (readiness 503, new runs 503, streams
# get drainSeconds to finish, then an error event and [DONE]); the 10 s spare lets those last
# frames flush before the master's SIGKILL.
graceful_timeout = int(_settings.gateway.drain_seconds) + 10
# Above typical proxy idle timeouts (nginx 60 s), so the proxy closes idle connections first;
# a drain closes idle keep-alives at once, so this never delays a shutdown.
keepalive = 75
# No gunicorn access log: the app writes one JSON line per request to stdout (with request id,
# agent and the client IP behind trusted proxies, which gunicorn cannot know: fault 8). Pass
# --access-logfile - to get gunicorn's line too; the worker keeps it working (fault 2).
accesslog = None
# Errors and worker lifecycle to stderr, apart from the JSON request lines on stdout.
errorlog = "-"

# Metrics add up across workers only if they share a directory that exists before the fork.
# A directory we create is fresh; one given by the operator is cleared of old workers' files.
_metrics_dir_owned = not os.environ.get("PROMETHEUS_MULTIPROC_DIR")
if _metrics_dir_owned:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="openclaw-metrics-")
else:
    os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)
    for _stale in glob.glob(os.path.join(os.environ["PROMETHEUS_MULTIPROC_DIR"], "*.db")):
        os.remove(_stale)


def child_exit(server, worker):  # noqa: ANN001 - gunicorn's hook signature
    """Drop a dead worker's live gauges (active streams and sockets) from the sums."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):  # noqa: ANN001 - gunicorn's hook signature
    """Remove the metrics directory this master created."""
    if _metrics_dir_owned:
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)
