"""The bare passthrough baseline: what Flask + gunicorn(gevent) + pooled urllib3 cost, and nothing else.

One route forwards the request body to ``$BENCH_UPSTREAM_URL`` with a ``urllib3.PoolManager`` as
urllib3 ships it, set up as the gateway sets up its pool (non-blocking, 256 connections per
host, retries off), and returns the upstream's answer: its JSON body, or its event stream relayed
chunk by chunk. No auth, no parsing, no sessions. The gateway's own connection classes (its
header parse, its dropped-connection check, its read buffers) are the gateway's work, so the
baseline does not get them. Run it under the gateway's worker class:

    gunicorn -k openclaw_gateway.server.GatewayWorker bench.passthrough:app
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import urllib3
from flask import Flask, Response, request

UPSTREAM_URL = os.environ.get("BENCH_UPSTREAM_URL", "http://127.0.0.1:8000/v1/chat/completions")
HEADERS = {"Content-Type": "application/json"}

pool = urllib3.PoolManager(num_pools=32, maxsize=256, block=False, retries=False)
app = Flask(__name__)


@app.post("/v1/chat/completions")
def forward() -> Response:
    upstream = pool.urlopen(
        "POST",
        UPSTREAM_URL,
        body=request.get_data(),
        headers=HEADERS,
        preload_content=False,
        retries=False,
        redirect=False,
    )
    content_type = upstream.headers.get("content-type", "application/json")
    if not content_type.startswith("text/event-stream"):
        body = upstream.read()
        upstream.release_conn()
        return Response(body, status=upstream.status, content_type=content_type)

    def relay() -> Iterator[bytes]:
        # Each chunk as it arrives: urllib3's own chunked reader, else one read at a time.
        try:
            if upstream.chunked:
                yield from upstream.read_chunked(decode_content=True)
            else:
                while data := upstream.read1(65536):
                    yield data
        finally:
            upstream.release_conn()

    return Response(relay(), status=upstream.status, content_type=content_type)
