"""Where a held SSE stream's memory goes, in one gateway (or passthrough) worker.

    python -m bench.stream_memory [--streams 1000] [--passthrough] [--tracemalloc 8]

Holds ``--streams`` streams (90 chunks, one a second) on one worker under gunicorn with
``bench/memory_hook.py``, waits until every stream has had two content chunks, then prints the
worker's RSS per stream (the measure of ``make bench``), its split into the glibc heap (C stack
copies of parked greenlets, buffers, objects over 512 bytes), pymalloc (Python objects of 512
bytes or less) and other anonymous memory (mostly the greenlets' Python frame stacks, a 16 KiB
mapping each, resident page by page), the live greenlets with their saved C stacks and, with
``--tracemalloc N``, the allocation sites holding the most (N frames per trace; slower). A
parked greenlet's saved C stack is one block there, at the line where the greenlet waits.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import shutil
import socket
import sys
import tracemalloc
from typing import Any

from bench import client
from bench.run import (
    GUNICORN_ARGS,
    PATH,
    TMP,
    TOKEN,
    Server,
    base_env,
    body,
    free_port,
    gateway_config,
    new_event_loop,
    rss_kb,
    start_upstream,
    timed_calls,
)

HOLD_MODEL = "bench-90-1000"  # long enough to measure in the steady state, then stopped


def _command(path: str, text: str) -> dict[str, Any]:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(path)
        sock.sendall(text.encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    return json.loads(data)  # type: ignore[no-any-return]


def _server(upstream: Server, passthrough: bool, probe: str) -> tuple[Server, bytes, list[bytes]]:
    state = TMP / "stream-memory"
    shutil.rmtree(state, ignore_errors=True)
    state.mkdir(parents=True)
    config = gateway_config(upstream.port)
    config["models"]["providers"]["up"]["models"].append({"id": HOLD_MODEL})
    config["agents"]["list"].append({"id": "long", "model": f"up/{HOLD_MODEL}"})
    (state / "openclaw.json").write_text(json.dumps(config))
    port = free_port()
    env = base_env()
    env.update(
        STREAM_MEMORY_SOCKET=probe,
        OPENCLAW_CONFIG_PATH=str(state / "openclaw.json"),
        OPENCLAW_STATE_DIR=str(state),
        OPENCLAW_GATEWAY_PORT=str(port),
        WEB_CONCURRENCY="1",
        BENCH_UPSTREAM_URL=f"http://127.0.0.1:{upstream.port}{PATH}",
    )
    argv = [sys.executable, "-m", "gunicorn", "-c", "bench/memory_hook.py", *GUNICORN_ARGS]
    if passthrough:
        argv += ["-b", f"127.0.0.1:{port}", "bench.passthrough:app"]
        hold, warm = body(HOLD_MODEL, stream=True), [body("bench"), body("bench-20", stream=True)]
    else:
        argv += ["wsgi:application"]
        hold = body("openclaw/long", stream=True)
        warm = [body("openclaw"), body("openclaw/s20", stream=True)]
    name = "stream-memory-" + ("passthrough" if passthrough else "gateway")
    return Server(name, argv, env, port).start(), hold, warm


def _short(filename: str) -> str:
    for marker in ("openclaw_gateway/", "site-packages/", "/lib/python3"):
        if marker in filename:
            filename = filename.split(marker, 1)[1]
    return filename.split("/", 1)[1] if filename.startswith(".") else filename


def _top_sites(path: str, streams: int, limit: int) -> None:
    """The allocation sites holding the most, by the innermost gateway frame (else the library)."""
    new, old = tracemalloc.Snapshot.load(path), tracemalloc.Snapshot.load(path + ".base")
    sizes: collections.Counter[str] = collections.Counter()
    blocks: collections.Counter[str] = collections.Counter()
    for sign, snapshot in ((1, new), (-1, old)):
        for trace in snapshot.traces:
            frames = list(trace.traceback)[::-1]  # most recent first
            ours = [f for f in frames if "openclaw_gateway" in f.filename]
            frame = ours[0] if ours else frames[0]
            key = f"{_short(frame.filename)}:{frame.lineno} ({_short(frames[0].filename)}:"
            key += f"{frames[0].lineno})"
            sizes[key] += sign * trace.size
            blocks[key] += sign
    print(f"tracemalloc, top {limit} sites (innermost gateway frame, then the allocating line):")
    for key, size in sizes.most_common(limit):
        print(f"  {size / streams:7.0f} B {blocks[key] / streams:5.1f} blocks  {key}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--passthrough", action="store_true", help="the bare passthrough app")
    parser.add_argument("--tracemalloc", type=int, default=0, metavar="FRAMES")
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args()
    count = args.streams
    probe = str(TMP / f"stream-memory-{os.getpid()}.sock")
    snapshot = str(TMP / "stream-memory.snapshot")
    upstream = start_upstream()
    try:
        server, hold, warm = _server(upstream, args.passthrough, probe)
        try:
            server.wait_workers(1)
            (worker,) = server.workers()
            for payload in warm:
                list(timed_calls(server.port, payload, TOKEN, 200))
            _command(probe, f"start {args.tracemalloc}")
            baseline = rss_kb(worker)
            raw = client.request_bytes(PATH, hold, TOKEN, server.port)
            report: dict[str, Any] = {}

            async def measure(held: list[list[client.HeldStream]]) -> None:
                loop = asyncio.get_running_loop()
                while not held or not all(s.chunks >= 2 or s.failed for s in held[0]):
                    await asyncio.sleep(0.2)
                report["rss_kb"] = rss_kb(worker) - baseline
                report["failed"] = sum(1 for s in held[0] if s.failed)
                report.update(
                    await loop.run_in_executor(None, _command, probe, f"report {snapshot}")
                )
                await loop.run_in_executor(None, server.stop)  # ends the held streams

            async def run() -> None:
                held: list[list[client.HeldStream]] = []

                def sample(streams: list[client.HeldStream]) -> None:
                    if not held:
                        held.append(streams)

                task = asyncio.create_task(measure(held))
                await client.hold_streams(server.port, raw, count, on_sample=sample)
                await task

            loop = new_event_loop()
            try:
                loop.run_until_complete(run())
            finally:
                loop.close()
        finally:
            server.stop()
    finally:
        upstream.stop()
        if os.path.exists(probe):
            os.remove(probe)

    name = "passthrough" if args.passthrough else "gateway"
    print(f"{name}, {count} held streams ({report['failed']} failed), per stream:")
    print(f"  RSS {report['rss_kb'] / count:.1f} KB")
    if args.tracemalloc:
        print("  (with tracemalloc on: its own memory included, pymalloc's figures unavailable)")
    else:
        anon_other = report["anon_kb"] - report["pymalloc_kb"]
        print(
            f"  glibc heap {report['heap_kb'] / count:.1f} KB, pymalloc "
            f"{report['pymalloc_kb'] / count:.1f} KB, other anonymous memory "
            f"{anon_other / count:.1f} KB"
        )
    print("greenlets (count, mean saved C stack):")
    for key, n, stack in report["greenlets"]:
        print(f"  {n:6d}  {stack:6d} B  {key}")
    if args.tracemalloc:
        _top_sites(snapshot, count, args.top)


if __name__ == "__main__":
    main()
