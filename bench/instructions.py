"""Instructions per request in one gunicorn worker: the gateway against the bare passthrough.

``make bench`` measures requests/s on 2 cores shared with the load generator and the upstream,
and on this kind of machine the same build moves by 10% between runs. callgrind counts the
instructions the worker executes instead: the same build gives the same count to within ~0.5%,
whatever else runs, so a change of 1% shows. Kernel time (syscalls) is not in the count.

    python -m bench.instructions [--mode json|sse20] [--requests 300]

Each server runs under ``valgrind --tool=callgrind`` with one worker and gets, on one keep-alive
connection, a warm-up and then ``--requests`` calls one at a time; the worker's count for
(warm-up + a few) is taken from its count for (warm-up + a few + ``--requests``), so start-up
and warm-up drop out. About a minute per server and mode.
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import sys

from bench import client
from bench.run import (
    PATH,
    TMP,
    TOKEN,
    body,
    running,
    start_gateway,
    start_passthrough,
    start_upstream,
)

WARM_UP = 30
BASELINE = 20  # the calls of the short run, after the warm-up
MODES = {
    "json": (body("bench"), body("openclaw")),
    "sse20": (body("bench-20", stream=True), body("openclaw/s20", stream=True)),
}


def _worker_total(prefix: str) -> int:
    """The largest count among the processes' files: the worker (the master idles)."""
    totals = []
    for path in glob.glob(prefix + ".*"):
        with open(path) as out:
            for line in out:
                if line.startswith(("summary:", "totals:")):
                    totals.append(int(line.split()[1]))
                    break
    if not totals:
        raise RuntimeError(f"callgrind wrote nothing to {prefix}.*")
    return max(totals)


def _count(name: str, mode: str, calls: int) -> int:
    """The worker's instructions for a warm-up and ``calls`` calls (start-up included)."""
    prefix = str(TMP / f"callgrind-{name}-{mode}-{calls}")
    for stale in glob.glob(prefix + ".*"):
        os.remove(stale)
    wrap = ("valgrind", "--tool=callgrind", f"--callgrind-out-file={prefix}.%p")
    passthrough_body, gateway_body = MODES[mode]
    with running(start_upstream) as (upstream,):
        if name == "gateway":
            start = lambda: start_gateway(upstream, 1, tag="-callgrind", wrap=wrap, timeout=300)  # noqa: E731
            payload, token = gateway_body, TOKEN
        else:
            start = lambda: start_passthrough(upstream, 1, wrap=wrap, timeout=300)  # noqa: E731
            payload, token = passthrough_body, None
        with running(start) as (server,):
            conn = client.Connection(server.port)
            raw = client.request_bytes(PATH, payload, token, server.port)
            try:
                for _ in range(WARM_UP + calls):
                    timing, reply = conn.call(raw)
                    if timing.status != 200:
                        raise RuntimeError(f"{name}: HTTP {timing.status}: {reply[:200]!r}")
            finally:
                conn.close()
    return _worker_total(prefix)


def per_request(name: str, mode: str, requests: int) -> float:
    return (_count(name, mode, BASELINE + requests) - _count(name, mode, BASELINE)) / requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--mode", choices=sorted(MODES), action="append")
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    if not shutil.which("valgrind"):
        sys.exit("valgrind is not installed (apt-get install valgrind)")
    TMP.mkdir(parents=True, exist_ok=True)
    for mode in args.mode or ["json"]:
        counts = {
            name: per_request(name, mode, args.requests) for name in ("passthrough", "gateway")
        }
        ratio = counts["passthrough"] / counts["gateway"]
        print(
            f"{mode}: passthrough {counts['passthrough'] / 1e6:.3f}M, gateway "
            f"{counts['gateway'] / 1e6:.3f}M instructions per request; passthrough / gateway "
            f"{ratio:.1%} (what req/s would be if the worker's CPU were all that counted)",
            flush=True,
        )


if __name__ == "__main__":
    main()
