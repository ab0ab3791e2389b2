"""Idle WebSocket sockets on one worker: open N authenticated sockets, let ticks flow, print RSS.

    python bench/ws_idle.py                      # 2000 sockets, ticks every second, hold 15 s
    python bench/ws_idle.py -n 5000 --tick-ms 500 --hold 30

Starts its own gateway (gunicorn, one worker, token auth, the built-in echo provider) unless
``--url`` points at a running one (then ``--pid`` names its worker for RSS). The client is a
minimal asyncio WebSocket client, so the bench process itself stays small and single-threaded.
Not a test: it measures, it does not assert.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import resource
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "bench-token"


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def worker_pid(master: int) -> int:
    """The gunicorn worker: the master's only child."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for task in Path(f"/proc/{master}/task").iterdir():
            children = (task / "children").read_text().split()
            if children:
                return int(children[0])
        time.sleep(0.1)
    raise SystemExit("no gunicorn worker found")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_gateway(tick_ms: int, tmp: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    config = {
        "gateway": {"auth": {"mode": "token", "token": TOKEN}, "ws": {"tickIntervalMs": tick_ms}}
    }
    (tmp / "openclaw.json").write_text(json.dumps(config))
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("OPENCLAW_")},
        "OPENCLAW_CONFIG_PATH": str(tmp / "openclaw.json"),
        "OPENCLAW_STATE_DIR": str(tmp),
        "OPENCLAW_GATEWAY_PORT": str(port),
        "WEB_CONCURRENCY": "1",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:application"],
        cwd=ROOT,
        env=env,
        stdout=(tmp / "gateway.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 20
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
            return proc, port
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit("gateway did not start; see " + str(tmp / "gateway.log")) from None
            time.sleep(0.1)


# -- a minimal WebSocket client ------------------------------------------------------------


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readexactly(2)
    opcode, length = head[0] & 0x0F, head[1] & 0x7F
    if length == 126:
        length = struct.unpack("!H", await reader.readexactly(2))[0]
    elif length == 127:
        length = struct.unpack("!Q", await reader.readexactly(8))[0]
    return opcode, await reader.readexactly(length)


def text_frame(text: str) -> bytes:
    payload = text.encode()
    mask = os.urandom(4)
    length = len(payload)
    head = bytes([0x81]) + (
        bytes([0x80 | length]) if length < 126 else bytes([0x80 | 126]) + struct.pack("!H", length)
    )
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + masked


async def open_socket(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    status = await reader.readuntil(b"\r\n\r\n")
    if b" 101 " not in status.split(b"\r\n", 1)[0]:
        raise RuntimeError(f"upgrade refused: {status[:60]!r}")
    await read_frame(reader)  # connect.challenge
    connect = {
        "type": "req",
        "id": "c",
        "method": "connect",
        "params": {
            "minProtocol": 3,
            "maxProtocol": 4,
            "client": {"id": "bench", "version": "1", "platform": "linux", "mode": "cli"},
            "auth": {"token": TOKEN},
        },
    }
    writer.write(text_frame(json.dumps(connect)))
    _, hello = await read_frame(reader)
    if not json.loads(hello).get("ok"):
        raise RuntimeError(f"connect refused: {hello[:200]!r}")
    return reader, writer


async def count_ticks(reader: asyncio.StreamReader, counter: list[int]) -> None:
    try:
        while True:
            opcode, payload = await read_frame(reader)
            if opcode == 0x08:
                return
            if b'"event":"tick"' in payload:
                counter[0] += 1
    except (asyncio.IncompleteReadError, ConnectionError):
        return


async def bench(port: int, worker: int | None, n: int, hold: float, batch: int) -> None:
    before = rss_kib(worker) if worker else 0
    started = time.monotonic()
    sockets: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    for start in range(0, n, batch):
        sockets += await asyncio.gather(*(open_socket(port) for _ in range(min(batch, n - start))))
    opened = time.monotonic() - started
    ticks = [0]
    readers = [asyncio.create_task(count_ticks(r, ticks)) for r, _ in sockets]
    after_open = rss_kib(worker) if worker else 0
    await asyncio.sleep(hold)
    after_hold = rss_kib(worker) if worker else 0
    alive = sum(1 for task in readers if not task.done())
    print(f"sockets opened and authenticated: {len(sockets)} in {opened:.1f} s")
    print(f"still open after {hold:.0f} s: {alive}; ticks received: {ticks[0]}")
    if worker:
        print(f"worker RSS before: {before / 1024:.1f} MiB")
        print(f"worker RSS after open: {after_open / 1024:.1f} MiB")
        print(f"worker RSS after hold: {after_hold / 1024:.1f} MiB")
        print(f"per socket: {(after_hold - before) / max(1, len(sockets)):.1f} KiB")
    for task in readers:
        task.cancel()
    for _, writer in sockets:
        writer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--connections", type=int, default=2000)
    parser.add_argument("--tick-ms", type=int, default=1000)
    parser.add_argument("--hold", type=float, default=15.0, help="seconds to hold the sockets")
    parser.add_argument("--batch", type=int, default=100, help="sockets opened concurrently")
    parser.add_argument("--url", help="ws://host:port of a running gateway (token bench-token)")
    parser.add_argument("--pid", type=int, help="with --url: the worker pid, for RSS")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(
        resource.RLIMIT_NOFILE, (min(hard, max(soft, args.connections * 2 + 100)), hard)
    )
    proc = None
    with tempfile.TemporaryDirectory() as tmp:
        if args.url:
            port, worker = int(args.url.rsplit(":", 1)[1].strip("/")), args.pid
        else:
            proc, port = start_gateway(args.tick_ms, Path(tmp))
            worker = worker_pid(proc.pid)
            print(f"gateway on port {port}, worker pid {worker}, ticks every {args.tick_ms} ms")
        try:
            asyncio.run(bench(port, worker, args.connections, args.hold, args.batch))
        finally:
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=30)


if __name__ == "__main__":
    main()
