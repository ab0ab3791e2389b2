"""Clients the benchmarks time with: a keep-alive HTTP/1.1 client for one-at-a-time calls, a
Python load generator for when ``wrk`` is missing, and an asyncio client that holds thousands of
streams open. All hand-written over sockets so that the client's own cost stays small and known.
"""

from __future__ import annotations

import asyncio
import socket
import statistics
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Timing:
    """One call, in seconds from just before the request was sent."""

    status: int
    headers: float  # the status line and headers were in
    first_data: float  # the first SSE ``data:`` event (the role chunk) was in (= total for JSON)
    total: float  # the whole response was in


def request_bytes(path: str, body: bytes, token: str | None, port: int) -> bytes:
    head = [
        f"POST {path} HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
    ]
    if token:
        head.append(f"Authorization: Bearer {token}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


class Connection:
    """One keep-alive connection that times each call (Content-Length or chunked bodies)."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.port = port
        self.sock = socket.create_connection((host, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""

    def close(self) -> None:
        self.sock.close()

    def _fill(self) -> None:
        data = self.sock.recv(262144)
        if not data:
            raise ConnectionError("server closed the connection")
        self.buffer += data

    def _line(self) -> bytes:
        while True:
            end = self.buffer.find(b"\r\n")
            if end >= 0:
                line, self.buffer = self.buffer[:end], self.buffer[end + 2 :]
                return line
            self._fill()

    def _exactly(self, n: int) -> bytes:
        while len(self.buffer) < n:
            self._fill()
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def call(self, raw_request: bytes) -> tuple[Timing, bytes]:
        start = time.perf_counter()
        self.sock.sendall(raw_request)
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end >= 0:
                break
            self._fill()
        head, self.buffer = self.buffer[:end], self.buffer[end + 4 :]
        t_headers = time.perf_counter() - start
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        fields = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            fields[name.strip().lower()] = value.strip()
        if fields.get(b"transfer-encoding", b"").lower() == b"chunked":
            parts = []
            t_first = 0.0
            while True:
                size = int(self._line().split(b";")[0], 16)
                if size == 0:
                    self._line()
                    break
                parts.append(self._exactly(size))
                self._exactly(2)
                if not t_first and b"data:" in parts[-1]:
                    t_first = time.perf_counter() - start
            body = b"".join(parts)
        else:
            body = self._exactly(int(fields.get(b"content-length", b"0")))
            t_first = 0.0
        total = time.perf_counter() - start
        if fields.get(b"connection", b"").lower() == b"close":
            self.sock.close()
            self.sock = socket.create_connection(("127.0.0.1", self.port))
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.buffer = b""
        return Timing(status, t_headers, t_first or total, total), body


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def summarize_ms(values: list[float]) -> dict[str, float]:
    """Median, p90, p99 and mean of durations in seconds, as milliseconds."""
    return {
        "p50_ms": round(statistics.median(values) * 1000, 3),
        "p90_ms": round(percentile(values, 90) * 1000, 3),
        "p99_ms": round(percentile(values, 99) * 1000, 3),
        "mean_ms": round(statistics.fmean(values) * 1000, 3),
    }


# ---------------------------------------------------------------------------------------------
# The Python load generator (used only when wrk is not installed)


async def _load_worker(
    port: int, raw: bytes, deadline: float, latencies: list[float], errors: list[int]
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            writer.write(raw)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            lower = head.lower()
            if b"transfer-encoding: chunked" in lower:
                while True:
                    size = int((await reader.readline()).split(b";")[0], 16)
                    await reader.readexactly(size + 2)
                    if size == 0:
                        break
            else:
                marker = lower.find(b"content-length:")
                length = int(lower[marker + 15 :].split(b"\r\n", 1)[0]) if marker >= 0 else 0
                await reader.readexactly(length)
            latencies.append(time.perf_counter() - start)
            if status >= 300:
                errors.append(status)
    finally:
        writer.close()


async def python_load(
    port: int, path: str, body: bytes, token: str | None, connections: int, seconds: float
) -> dict[str, Any]:
    """What wrk would report, from ``connections`` asyncio clients for ``seconds``."""
    raw = request_bytes(path, body, token, port)
    latencies: list[float] = []
    errors: list[int] = []
    start = time.perf_counter()
    deadline = start + seconds
    await asyncio.gather(
        *(_load_worker(port, raw, deadline, latencies, errors) for _ in range(connections))
    )
    elapsed = time.perf_counter() - start
    return {
        "requests": len(latencies),
        "duration_us": int(elapsed * 1e6),
        "non2xx": len(errors),
        "connect_errors": 0,
        "read_errors": 0,
        "write_errors": 0,
        "timeouts": 0,
        "p50_us": int(percentile(latencies, 50) * 1e6),
        "p90_us": int(percentile(latencies, 90) * 1e6),
        "p99_us": int(percentile(latencies, 99) * 1e6),
        "mean_us": statistics.fmean(latencies) * 1e6 if latencies else 0.0,
    }


# ---------------------------------------------------------------------------------------------
# Held streams


@dataclass(slots=True)
class HeldStream:
    opened: float = 0.0  # headers and role chunk in
    last: float = 0.0
    max_gap: float = 0.0
    chunks: int = 0
    done: bool = False
    failed: str = ""
    arrivals: list[float] = field(default_factory=list)

    def max_gap_after(self, start: float) -> float:
        """The longest wait between two content chunks once every stream was open (the hold)."""
        times = [t for t in self.arrivals if t >= start]
        return max((b - a for a, b in zip(times, times[1:], strict=False)), default=0.0)


class _StreamProtocol(asyncio.Protocol):
    """Count content chunks as they arrive; note the largest gap between two arrivals."""

    def __init__(self, raw: bytes, stream: HeldStream, finished: asyncio.Future[None]) -> None:
        self.raw = raw
        self.stream = stream
        self.finished = finished
        self.transport: asyncio.Transport | None = None
        self.tail = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.write(self.raw)

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        stream = self.stream
        if not stream.opened:
            if not data.startswith(b"HTTP/1.1 200"):
                stream.failed = data[:40].decode(errors="replace")
                self._finish()
                return
            stream.opened = now
        elif stream.last:
            stream.max_gap = max(stream.max_gap, now - stream.last)
        stream.last = now
        text = self.tail + data
        contents = data.count(b'"content":')
        if contents:
            stream.arrivals.append(now)  # content, not the role chunk that came with the headers
        stream.chunks += contents
        if b"data: [DONE]" in text:
            stream.done = True
            self._finish()
        self.tail = data[-16:]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.stream.done and not self.stream.failed:
            self.stream.failed = "connection lost"
        if not self.finished.done():
            self.finished.set_result(None)

    def _finish(self) -> None:
        if self.transport is not None:
            self.transport.close()
        if not self.finished.done():
            self.finished.set_result(None)


async def hold_streams(
    port: int,
    raw: bytes,
    count: int,
    *,
    batch: int = 250,
    on_sample: Any = None,
    deadline_seconds: float = 120.0,
) -> list[HeldStream]:
    """Open ``count`` streams (``batch`` connections at a time), read each to its end."""
    loop = asyncio.get_running_loop()
    streams = [HeldStream() for _ in range(count)]
    waits: list[asyncio.Future[None]] = []

    async def open_one(stream: HeldStream) -> None:
        finished: asyncio.Future[None] = loop.create_future()
        waits.append(finished)
        try:
            await loop.create_connection(
                lambda: _StreamProtocol(raw, stream, finished), "127.0.0.1", port
            )
        except OSError as exc:
            stream.failed = f"connect: {exc}"
            finished.set_result(None)

    for start in range(0, count, batch):
        group = streams[start : start + batch]
        await asyncio.gather(*(open_one(s) for s in group))
        # Closed loop: the next batch connects once this one is answered (or after 5 s), so
        # the ramp goes at the server's pace instead of piling up in its accept queue.
        until = loop.time() + 5.0
        while loop.time() < until and not all(s.opened or s.failed for s in group):
            await asyncio.sleep(0.02)
        if on_sample is not None:
            on_sample(streams)
    end = loop.time() + deadline_seconds
    pending = set(waits)
    while pending and loop.time() < end:
        done, pending = await asyncio.wait(pending, timeout=0.5)
        if on_sample is not None:
            on_sample(streams)
    for stream in streams:
        if not stream.done and not stream.failed:
            stream.failed = "timed out"
    return streams
