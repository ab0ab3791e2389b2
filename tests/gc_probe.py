"""Serve the app in this process and count the cyclic garbage its requests leave.

``python -m tests.gc_probe CONFIG_JSON REQUESTS OUT_JSON``: the gateway's app under gevent's
WSGI server with the project's handler, on a loopback port; a keep-alive client in the same
process makes warm-up calls, then, with the collector off, ``REQUESTS`` JSON and ``REQUESTS``
streamed chat completions; ``gc.collect()`` then says how many objects only it could free.
Writes ``{"unreachable": N, "types": {...}}`` to OUT_JSON.
"""

from gevent import monkey

monkey.patch_all()

import collections  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402

import urllib3  # noqa: E402
from gevent.pywsgi import WSGIServer  # noqa: E402

from openclaw_gateway import create_app  # noqa: E402
from openclaw_gateway.server import DevHandler, dev_listener, freeze_startup_heap  # noqa: E402

WARM_UP = 5


def main() -> None:
    config_path, requests, out_path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    with open(config_path) as f:
        config = json.load(f)
    app = create_app(config)
    freeze_startup_heap()
    listener = dev_listener("127.0.0.1", 0)
    WSGIServer(listener, app, handler_class=DevHandler, log=None).start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/v1/chat/completions"
    pool = urllib3.PoolManager(maxsize=1, retries=False)
    headers = {
        "Authorization": f"Bearer {config['gateway']['auth']['token']}",
        "Content-Type": "application/json",
    }
    bodies = [
        json.dumps({"model": "openclaw", "messages": [{"role": "user", "content": "hi"}], **extra})
        for extra in ({}, {"stream": True})
    ]

    def call(body: str) -> None:
        response = pool.request("POST", url, body=body, headers=headers)
        if response.status != 200:
            raise SystemExit(f"HTTP {response.status}: {response.data[:300]!r}")

    for body in bodies:
        for _ in range(WARM_UP):
            call(body)
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    for body in bodies:
        for _ in range(requests):
            call(body)
    unreachable = gc.collect()
    types = collections.Counter(
        getattr(o, "__qualname__", None) if type(o).__name__ == "function" else type(o).__name__
        for o in gc.garbage
    )
    with open(out_path, "w") as out:
        json.dump({"unreachable": unreachable, "types": dict(types)}, out)


if __name__ == "__main__":
    main()
