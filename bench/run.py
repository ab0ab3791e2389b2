"""``make bench``: the gateway against a bare passthrough and a direct upstream call, in one run.

Sections (each prints as it goes; all figures land in ``bench/results/<date>.json`` and the table
in ``docs/benchmarks.md``):

1. the fake upstream alone (it must not be the bottleneck);
2. load: passthrough and gateway, 1 and 2 workers, c = 1, 10, 100, JSON and SSE (20 chunks);
3. one call at a time: added latency over a direct upstream call, SSE headers / role chunk timing;
4. held streams: 1,000 and 5,000 concurrent streams (one chunk a second) on one gateway worker;
5. a stateful turn with a 100-turn transcript against a stateless one (SQLite, Redis).

``python -m bench.run --quick`` runs every section tiny (for working on the harness); its
results go to ``bench/results/tmp/`` and leave the docs alone.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

from bench import client
from bench.upstream import new_event_loop

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
TMP = RESULTS / "tmp"
DOC = ROOT / "docs" / "benchmarks.md"
LUA = ROOT / "bench" / "post.lua"
TOKEN = "bench-token"
PATH = "/v1/chat/completions"
ROUNDS = 2  # alternating rounds per load point, each of --seconds
HOLD_CHUNKS = 20  # a held stream lasts ~20 s: long enough to have them all open at once
DOC_BEGIN = "<!-- bench:begin (written by make bench; edit outside these markers) -->"
DOC_END = "<!-- bench:end -->"
# Both servers get the same gunicorn settings; worker_connections high enough for the
# held-streams section (the config file's 2000 would make stream 2001 wait).
GUNICORN_ARGS = ["--worker-connections", "10000", "--backlog", "4096", "--keep-alive", "75"]


def _user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def body(model: str, stream: bool = False, **extra: Any) -> bytes:
    payload: dict[str, Any] = {"model": model, "messages": [_user("Say hello.")]}
    if stream:
        payload["stream"] = True
    payload.update(extra)
    return json.dumps(payload, separators=(",", ":")).encode()


# ---------------------------------------------------------------------------------------------
# Processes


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Server:
    """A child process serving HTTP on a loopback port, stopped with SIGQUIT (no drain wait)."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], port: int) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.port = port
        self.log_path = TMP / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> Server:
        TMP.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                self.argv, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited:\n{self.log_path.read_text()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.name} did not listen within {timeout}s") from None
                time.sleep(0.05)
        return self

    def workers(self) -> list[int]:
        """The gunicorn workers' pids (the process itself when it has no children)."""
        assert self.proc is not None
        path = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        pids = [int(p) for p in path.read_text().split()] if path.exists() else []
        return pids or [self.proc.pid]

    def wait_workers(self, count: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.workers()) < count or self.proc is None or self.proc.pid in self.workers():
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: {count} workers did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGQUIT)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)


def base_env() -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("OPENCLAW_") and k not in ("PORT", "WEB_CONCURRENCY", "REDIS_URL")
    }
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = str(ROOT)
    return env


def start_upstream() -> Server:
    port = free_port()
    argv = [sys.executable, "-m", "bench.upstream", "--port", str(port)]
    return Server("upstream", argv, base_env(), port).start()


def gateway_config(upstream_port: int, store: str = "sqlite") -> dict[str, Any]:
    """Auth on, chat completions on, one provider: the fake upstream; one agent per reply shape."""
    return {
        "gateway": {
            "auth": {"mode": "token", "token": TOKEN},
            "http": {"endpoints": {"chatCompletions": {"enabled": True}}},
        },
        "models": {
            "providers": {
                "up": {
                    "baseUrl": f"http://127.0.0.1:{upstream_port}/v1",
                    "apiKey": "bench-upstream-key",
                    "api": "openai-completions",
                    "models": [{"id": "bench"}, {"id": "bench-20"}, {"id": "bench-hold"}],
                }
            }
        },
        "agents": {
            "defaults": {"model": {"primary": "up/bench"}},
            "list": [
                {"id": "main", "default": True},
                {"id": "s20", "model": "up/bench-20"},
                {"id": "hold", "model": f"up/bench-{HOLD_CHUNKS}-1000"},
            ],
        },
        "session": {"store": store},
    }


def start_gateway(
    upstream: Server,
    workers: int,
    store: str = "sqlite",
    tag: str = "",
    wrap: tuple[str, ...] = (),
    timeout: float = 30.0,
) -> Server:
    """The gateway under gunicorn; ``wrap`` goes before its command (``valgrind ...``)."""
    name = f"gateway-w{workers}{tag}"
    state = TMP / name
    shutil.rmtree(state, ignore_errors=True)
    state.mkdir(parents=True)
    config = state / "openclaw.json"
    config.write_text(json.dumps(gateway_config(upstream.port, store)))
    port = free_port()
    env = base_env()
    env.update(
        OPENCLAW_CONFIG_PATH=str(config),
        OPENCLAW_STATE_DIR=str(state),
        OPENCLAW_GATEWAY_PORT=str(port),
        WEB_CONCURRENCY=str(workers),
    )
    argv = [*wrap, sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", *GUNICORN_ARGS]
    server = Server(name, [*argv, "wsgi:application"], env, port).start(timeout)
    server.wait_workers(workers, timeout)
    return server


def start_passthrough(
    upstream: Server, workers: int, wrap: tuple[str, ...] = (), timeout: float = 30.0
) -> Server:
    port = free_port()
    env = base_env()
    env["BENCH_UPSTREAM_URL"] = f"http://127.0.0.1:{upstream.port}{PATH}"
    argv = [
        *wrap,
        sys.executable,
        "-m",
        "gunicorn",
        "-k",
        "openclaw_gateway.server.GatewayWorker",
        "-w",
        str(workers),
        "-b",
        f"127.0.0.1:{port}",
        "--no-control-socket",
        *GUNICORN_ARGS,
        "bench.passthrough:app",
    ]
    server = Server(f"passthrough-w{workers}", argv, env, port).start(timeout)
    server.wait_workers(workers, timeout)
    return server


@contextmanager
def running(*starters: Callable[[], Server]) -> Iterator[list[Server]]:
    servers: list[Server] = []
    try:
        for start in starters:
            servers.append(start())
        yield servers
    finally:
        for server in reversed(servers):
            server.stop()


# ---------------------------------------------------------------------------------------------
# Load


def ensure_wrk() -> str | None:
    """wrk's path, installing it with apt-get when missing and we may (as .ci/run does nginx)."""
    found = shutil.which("wrk")
    if found or os.environ.get("BENCH_NO_WRK"):
        return None if os.environ.get("BENCH_NO_WRK") else found
    if shutil.which("apt-get") and os.geteuid() == 0:
        print("wrk is missing: apt-get install wrk", flush=True)
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        if subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], **quiet).returncode:
            subprocess.run(["apt-get", "update", "-qq"], **quiet)
            subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], **quiet)
    found = shutil.which("wrk")
    if not found:
        print("wrk not available: using the Python load generator (slower; ratios still hold)")
    return found


class Load:
    """Drive one server with ``c`` connections for ``seconds``: wrk, else the Python generator."""

    def __init__(self, wrk: str | None, seconds: float) -> None:
        self.wrk = wrk
        self.seconds = seconds

    def run(
        self, port: int, payload: bytes, token: str | None, c: int, seconds: float | None = None
    ) -> dict[str, Any]:
        seconds = seconds or self.seconds
        if self.wrk:
            env = dict(os.environ, BENCH_BODY=payload.decode(), BENCH_AUTH=token or "")
            argv = [self.wrk, "-t1", f"-c{c}", f"-d{seconds:g}s", "--timeout", "10s", "-s"]
            argv += [str(LUA), f"http://127.0.0.1:{port}{PATH}"]
            out = subprocess.run(argv, env=env, capture_output=True, text=True, check=True).stdout
            match = re.search(r"^BENCH_RESULT (\{.*\})$", out, re.M)
            if match is None:
                raise RuntimeError(f"wrk printed no result:\n{out}")
            raw = json.loads(match.group(1))
        else:
            raw = asyncio.run(client.python_load(port, PATH, payload, token, c, seconds))
        errors = sum(
            raw[k] for k in ("connect_errors", "read_errors", "write_errors", "non2xx", "timeouts")
        )
        return {
            "rps": round(raw["requests"] / (raw["duration_us"] / 1e6), 1),
            "p50_ms": round(raw["p50_us"] / 1000, 2),
            "p99_ms": round(raw["p99_us"] / 1000, 2),
            "requests": raw["requests"],
            "errors": errors,
        }


def combine(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Requests/s over all rounds; latency percentiles as the mean of the rounds'."""
    seconds = sum(r["requests"] / r["rps"] for r in rounds if r["rps"])
    requests = sum(r["requests"] for r in rounds)
    return {
        "rps": round(requests / seconds, 1) if seconds else 0.0,
        "p50_ms": round(statistics.fmean(r["p50_ms"] for r in rounds), 2),
        "p99_ms": round(statistics.fmean(r["p99_ms"] for r in rounds), 2),
        "requests": requests,
        "errors": sum(r["errors"] for r in rounds),
        "rounds_rps": [r["rps"] for r in rounds],
    }


def section_upstream_alone(load: Load, upstream: Server) -> dict[str, Any]:
    print("\n== 1. the fake upstream alone ==", flush=True)
    out = {}
    for label, payload in (("json", body("bench")), ("sse20", body("bench-20", stream=True))):
        for c in (10, 100):
            r = load.run(upstream.port, payload, None, c)
            out[f"{label}_c{c}"] = r
            print(f"upstream {label:5} c={c:<3} {r['rps']:>9.0f} req/s  p50 {r['p50_ms']} ms")
    return out


def section_load(load: Load, upstream: Server, concurrency: tuple[int, ...]) -> dict[str, Any]:
    print("\n== 2. load: passthrough vs gateway ==", flush=True)
    modes = {
        "json": (body("bench"), body("openclaw")),
        "sse20": (body("bench-20", stream=True), body("openclaw/s20", stream=True)),
    }
    rows: list[dict[str, Any]] = []
    for workers in (1, 2):
        with running(
            lambda w=workers: start_passthrough(upstream, w),  # type: ignore[misc]
            lambda w=workers: start_gateway(upstream, w),  # type: ignore[misc]
        ) as (passthrough, gateway):
            for mode, (pt_body, gw_body) in modes.items():
                # Warm both up (imports, pools, first-request paths) before measuring.
                load.run(passthrough.port, pt_body, None, 10, 1)
                load.run(gateway.port, gw_body, TOKEN, 10, 1)
                for c in concurrency:
                    # Alternate short rounds so that a burst from anything else on the machine
                    # hits both servers alike.
                    # Which goes first alternates too: a round can find the machine warmer or
                    # cooler (sockets in TIME_WAIT, caches) than the one before left it.
                    pt_rounds: list[dict[str, Any]] = []
                    gw_rounds: list[dict[str, Any]] = []
                    servers = [
                        (pt_rounds, passthrough.port, pt_body, None),
                        (gw_rounds, gateway.port, gw_body, TOKEN),
                    ]
                    for i in range(ROUNDS):
                        for rounds, port, payload, token in servers[:: 1 if i % 2 == 0 else -1]:
                            rounds.append(load.run(port, payload, token, c))
                    pt, gw = combine(pt_rounds), combine(gw_rounds)
                    ratio = gw["rps"] / pt["rps"] if pt["rps"] else 0.0
                    row = {
                        "mode": mode,
                        "workers": workers,
                        "c": c,
                        "passthrough": pt,
                        "gateway": gw,
                        "ratio": round(ratio, 3),
                    }
                    rows.append(row)
                    print(_load_line(row), flush=True)
    return {"rows": rows, "seconds_per_point": load.seconds}


def _load_line(row: dict[str, Any]) -> str:
    pt, gw = row["passthrough"], row["gateway"]
    errors = f"  errors pt={pt['errors']} gw={gw['errors']}" if pt["errors"] or gw["errors"] else ""
    return (
        f"{row['mode']:5} w={row['workers']} c={row['c']:<3} "
        f"passthrough {pt['rps']:>7.0f} req/s p50 {pt['p50_ms']:>6.2f} p99 {pt['p99_ms']:>6.2f} | "
        f"gateway {gw['rps']:>7.0f} req/s p50 {gw['p50_ms']:>6.2f} p99 {gw['p99_ms']:>6.2f} | "
        f"ratio {row['ratio']:.2f}{errors}"
    )


# ---------------------------------------------------------------------------------------------
# One call at a time


def timed_calls(
    port: int, payload: bytes, token: str | None, count: int, block: int = 50
) -> Iterator[client.Timing]:
    conn = client.Connection(port)
    raw = client.request_bytes(PATH, payload, token, port)
    try:
        for _ in range(count):
            timing, reply = conn.call(raw)
            if timing.status != 200:
                raise RuntimeError(f"HTTP {timing.status}: {reply[:200]!r}")
            yield timing
    finally:
        conn.close()


def interleaved(
    targets: dict[str, tuple[int, bytes, str | None]], count: int, block: int = 50
) -> dict[str, list[client.Timing]]:
    """``count`` calls to each target, alternating blocks so that drift hits all alike."""
    conns = {name: client.Connection(port) for name, (port, _, _) in targets.items()}
    raws = {
        name: client.request_bytes(PATH, payload, token, port)
        for name, (port, payload, token) in targets.items()
    }
    out: dict[str, list[client.Timing]] = {name: [] for name in targets}
    try:
        for name in targets:  # warm-up, not recorded
            for _ in range(20):
                conns[name].call(raws[name])
        done = 0
        while done < count:
            n = min(block, count - done)
            for name in targets:
                for _ in range(n):
                    timing, reply = conns[name].call(raws[name])
                    if timing.status != 200:
                        raise RuntimeError(f"{name}: HTTP {timing.status}: {reply[:200]!r}")
                    out[name].append(timing)
            done += n
    finally:
        for conn in conns.values():
            conn.close()
    return out


def section_latency(upstream: Server, count: int) -> dict[str, Any]:
    print("\n== 3. one call at a time (c=1): added latency, SSE first bytes ==", flush=True)
    with running(lambda: start_passthrough(upstream, 1), lambda: start_gateway(upstream, 1)) as (
        passthrough,
        gateway,
    ):
        json_runs = interleaved(
            {
                "direct": (upstream.port, body("bench"), None),
                "passthrough": (passthrough.port, body("bench"), None),
                "gateway": (gateway.port, body("openclaw"), TOKEN),
            },
            count,
        )
        sse_runs = interleaved(
            {
                "direct": (upstream.port, body("bench-20", stream=True), None),
                "passthrough": (passthrough.port, body("bench-20", stream=True), None),
                "gateway": (gateway.port, body("openclaw/s20", stream=True), TOKEN),
            },
            count,
        )
    out: dict[str, Any] = {"calls": count, "json": {}, "sse20": {}}
    for name, timings in json_runs.items():
        out["json"][name] = client.summarize_ms([t.total for t in timings])
    for name, timings in sse_runs.items():
        out["sse20"][name] = {
            "headers": client.summarize_ms([t.headers for t in timings]),
            "first_chunk": client.summarize_ms([t.first_data for t in timings]),
            "total": client.summarize_ms([t.total for t in timings]),
        }
    direct = out["json"]["direct"]["p50_ms"]
    out["added_ms"] = {
        "passthrough": round(out["json"]["passthrough"]["p50_ms"] - direct, 3),
        "gateway": round(out["json"]["gateway"]["p50_ms"] - direct, 3),
    }
    for name in ("direct", "passthrough", "gateway"):
        j, s = out["json"][name], out["sse20"][name]
        print(
            f"{name:11} json p50 {j['p50_ms']:.3f} ms p99 {j['p99_ms']:.3f} | sse20 headers p50 "
            f"{s['headers']['p50_ms']:.3f} first chunk p50 {s['first_chunk']['p50_ms']:.3f} "
            f"p99 {s['first_chunk']['p99_ms']:.3f} total p50 {s['total']['p50_ms']:.3f} ms"
        )
    print(
        f"added latency (median, {count} calls): gateway {out['added_ms']['gateway']:.3f} ms, "
        f"passthrough {out['added_ms']['passthrough']:.3f} ms"
    )
    return out


# ---------------------------------------------------------------------------------------------
# Held streams


def section_streams(upstream: Server, counts: tuple[int, ...]) -> dict[str, Any]:
    print("\n== 4. held streams on one gateway worker (one chunk a second) ==", flush=True)
    out: dict[str, Any] = {"chunks_per_stream": HOLD_CHUNKS, "runs": []}
    payload = body("openclaw/hold", stream=True)
    for count in counts:
        with running(lambda: start_gateway(upstream, 1, tag="-hold")) as (gateway,):
            (worker,) = gateway.workers()
            # Warm up (imports, pool, first requests) so the baseline is the idle steady state.
            list(timed_calls(gateway.port, body("openclaw"), TOKEN, 50))
            baseline = rss_kb(worker)
            peak = {"open": 0, "rss": baseline}

            def sample(
                streams: list[client.HeldStream], worker: int = worker, peak: dict[str, int] = peak
            ) -> None:
                open_now = sum(1 for s in streams if s.opened and not s.done and not s.failed)
                peak["open"] = max(peak["open"], open_now)
                peak["rss"] = max(peak["rss"], rss_kb(worker))

            raw = client.request_bytes(PATH, payload, TOKEN, gateway.port)
            started = time.perf_counter()
            cpu_start = cpu_seconds(worker)
            loop = new_event_loop()
            try:
                streams = loop.run_until_complete(
                    client.hold_streams(gateway.port, raw, count, on_sample=sample)
                )
            finally:
                loop.close()
            elapsed = time.perf_counter() - started
            cpu_used = cpu_seconds(worker) - cpu_start
        failed = [s for s in streams if s.failed]
        # The hold starts once every stream is open; a stream that then waits more than
        # 2.5 s between two content chunks (they come every second) or never finishes is
        # stalled. The wait for the first content chunk (the upstream call starts then) and
        # gaps while the others are still connecting are reported apart (max_gap_ramp_s).
        opened = [s.opened for s in streams if s.opened]
        hold_start = max(opened) if len(opened) == count else float("inf")
        hold_gaps = [s.max_gap_after(hold_start) for s in streams if not s.failed]
        stalled = sum(1 for g in hold_gaps if g > 2.5)
        short = [s for s in streams if not s.failed and s.chunks < HOLD_CHUNKS]
        run = {
            "streams": count,
            "peak_open": peak["open"],
            "completed": sum(1 for s in streams if s.done),
            "failed": len(failed),
            "stalled": stalled + len(short) + len(failed),
            "ramp_s": round(hold_start - min(opened), 2)
            if opened and len(opened) == count
            else None,
            "max_gap_hold_s": round(max(hold_gaps, default=0.0), 3),
            "max_gap_ramp_s": round(max((s.max_gap for s in streams), default=0.0), 3),
            "baseline_rss_kb": baseline,
            "peak_rss_kb": peak["rss"],
            "rss_per_stream_kb": round((peak["rss"] - baseline) / count, 1),
            "seconds": round(elapsed, 1),
            "worker_cpu_percent": round(100 * cpu_used / elapsed),
            "failures": sorted({s.failed for s in failed})[:5],
        }
        out["runs"].append(run)
        print(
            f"{count:>5} streams: peak open {run['peak_open']}, completed {run['completed']}, "
            f"stalled {run['stalled']} (failed {run['failed']}), all open after {run['ramp_s']} s, "
            f"max gap {run['max_gap_hold_s']} s (while opening {run['max_gap_ramp_s']} s), "
            f"RSS {baseline // 1024} -> {peak['rss'] // 1024} MiB = "
            f"{run['rss_per_stream_kb']} KB/stream; worker CPU {run['worker_cpu_percent']}% "
            f"({run['seconds']} s)",
            flush=True,
        )
        if failed:
            print(f"       failures: {run['failures']}")
    return out


# ---------------------------------------------------------------------------------------------
# Stateful turns


def _history_body(turns: int, user: str | None) -> bytes:
    messages: list[dict[str, str]] = []
    for i in range(turns):
        messages.append(_user(f"Question number {i}: what comes next in the sequence?"))
        messages.append({"role": "assistant", "content": f"Answer number {i}: the next one."})
    messages.append(_user("Say hello."))
    payload: dict[str, Any] = {"model": "openclaw", "messages": messages}
    if user:
        payload["user"] = user
    return json.dumps(payload, separators=(",", ":")).encode()


def redis_available() -> str | None:
    """Why the Redis run cannot happen, or None when it can."""
    if not (ROOT / "openclaw_gateway" / "sessions" / "redis.py").exists():
        return "store not available in this build"
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            if not sock.recv(64).startswith(b"+PONG"):
                return "no Redis answering at 127.0.0.1:6379"
    except OSError:
        return "no Redis answering at 127.0.0.1:6379"
    return None


def section_stateful(upstream: Server, samples: int, turns: int = 100) -> dict[str, Any]:
    print(f"\n== 5. a stateful turn with a {turns}-turn transcript vs stateless ==", flush=True)
    stores = {"sqlite": "sqlite", "redis": "redis://127.0.0.1:6379/14"}
    out: dict[str, Any] = {"turns": turns, "samples": samples}
    for name, store in stores.items():
        if name == "redis":
            reason = redis_available()
            if reason:
                print(f"redis: {reason}")
                out[name] = {"skipped": reason}
                continue
        with running(lambda s=store, n=name: start_gateway(upstream, 1, s, f"-{n}")) as (gw,):  # type: ignore[misc]
            conn = client.Connection(gw.port)
            stateless = client.request_bytes(PATH, body("openclaw"), TOKEN, gw.port)
            stateless_long = client.request_bytes(PATH, _history_body(turns, None), TOKEN, gw.port)
            times: dict[str, list[float]] = {
                "stateless": [],
                "stateless_history": [],
                "stateful": [],
                "stateful_next": [],
            }
            try:
                for _ in range(20):
                    conn.call(stateless)
                for i in range(samples):
                    user = f"bench-{uuid.uuid4().hex[:12]}"
                    # Seed: the first turn's client history becomes the transcript (untimed).
                    seed, _ = conn.call(
                        client.request_bytes(PATH, _history_body(turns, user), TOKEN, gw.port)
                    )
                    if seed.status != 200:
                        raise RuntimeError(f"seeding failed: HTTP {seed.status}")
                    turn = client.request_bytes(PATH, body("openclaw", user=user), TOKEN, gw.port)
                    # The first turn on the seeded transcript, then the one after it (what an
                    # ongoing conversation's turns are like: the worker has seen the rest).
                    order = [
                        [("stateful", turn), ("stateful_next", turn)],
                        [("stateless", stateless)],
                        [("stateless_history", stateless_long)],
                    ]
                    for group in order if i % 2 else reversed(order):
                        for label, raw in group:
                            timing, reply = conn.call(raw)
                            if timing.status != 200:
                                raise RuntimeError(
                                    f"{label}: HTTP {timing.status}: {reply[:200]!r}"
                                )
                            times[label].append(timing.total)
            finally:
                conn.close()
        result = {label: client.summarize_ms(values) for label, values in times.items()}
        stateless_p50 = result["stateless"]["p50_ms"]
        result["slower_ms"] = round(result["stateful"]["p50_ms"] - stateless_p50, 3)
        result["next_slower_ms"] = round(result["stateful_next"]["p50_ms"] - stateless_p50, 3)
        out[name] = result
        print(
            f"{name:6}: stateless p50 {stateless_p50:.3f} ms, stateful "
            f"({turns} turns stored) p50 {result['stateful']['p50_ms']:.3f} ms: "
            f"{result['slower_ms']:+.3f} ms, the turn after it p50 "
            f"{result['stateful_next']['p50_ms']:.3f} ms: {result['next_slower_ms']:+.3f} ms; "
            f"stateless resending the same history p50 "
            f"{result['stateless_history']['p50_ms']:.3f} ms",
            flush=True,
        )
    return out


# ---------------------------------------------------------------------------------------------
# Report


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "-"


def machine() -> dict[str, Any]:
    cpu = "unknown"
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with open("/proc/meminfo") as info:
        for line in info:
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    wrk = shutil.which("wrk")
    wrk_version = "-"
    if wrk:
        first = subprocess.run([wrk, "--version"], capture_output=True, text=True).stdout
        wrk_version = first.split(" [")[0].replace("wrk ", "").strip() or "?"
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    ).stdout.strip()
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "commit": commit + ("+dirty" if dirty else ""),
        "versions": {
            p: _version(p)
            for p in ("gunicorn", "gevent", "greenlet", "Flask", "Werkzeug", "urllib3", "uvloop")
        }
        | {"wrk": wrk_version},
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target, what was measured, and whether it is met."""
    checks: list[dict[str, Any]] = []
    for row in results.get("load", {}).get("rows", []):
        if row["mode"] == "json" and row["c"] in (10, 100):
            checks.append(
                {
                    "target": f"gateway >= 80% of passthrough req/s, w={row['workers']} c={row['c']}",
                    "measured": f"{row['ratio'] * 100:.1f}%",
                    "met": row["ratio"] >= 0.8,
                }
            )
    latency = results.get("latency")
    if latency:
        added = latency["added_ms"]["gateway"]
        checks.append(
            {
                "target": "added latency at c=1 <= 1.5 ms (median)",
                "measured": f"{added:.3f} ms",
                "met": added <= 1.5,
            }
        )
        first = latency["sse20"]["gateway"]["first_chunk"]["p50_ms"]
        checks.append(
            {
                "target": "SSE headers and role chunk within 2 ms of the request (median)",
                "measured": f"{first:.3f} ms",
                "met": first <= 2.0,
            }
        )
    for run in results.get("streams", {}).get("runs", []):
        if run["streams"] >= 5000 or run is results["streams"]["runs"][-1]:
            checks.append(
                {
                    "target": f"{run['streams']} streams in one worker, 0 stalled",
                    "measured": f"{run['stalled']} stalled, {run['peak_open']} open at peak",
                    "met": run["stalled"] == 0 and run["peak_open"] == run["streams"],
                }
            )
            checks.append(
                {
                    "target": f"{run['streams']} streams: <= 50 KB RSS per stream",
                    "measured": f"{run['rss_per_stream_kb']} KB",
                    "met": run["rss_per_stream_kb"] <= 50,
                }
            )
    for store in ("sqlite", "redis"):
        result = results.get("stateful", {}).get(store)
        if result and "slower_ms" in result:
            checks.append(
                {
                    "target": f"stateful turn (100-turn transcript, {store}) <= 1 ms slower",
                    "measured": f"{result['slower_ms']:+.3f} ms",
                    "met": result["slower_ms"] <= 1.0,
                }
            )
    return checks


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items())
    lines = [
        f"Last run: {results['date']} (`{results['command']}`, {results['seconds']:.0f} s), "
        f"commit `{m['commit']}`.",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, Linux {m['kernel']}, "
        f"Python {m['python']}; load average at start {m['load_average_at_start']}. "
        "Load generator, fake upstream and servers share the cores.",
        "",
        f"Versions: {versions}.",
        "",
        "### Targets",
        "",
        "| target | measured | met |",
        "|---|---|---|",
    ]
    for check in results["targets"]:
        lines.append(
            f"| {check['target']} | {check['measured']} | {'yes' if check['met'] else '**no**'} |"
        )
    up = results.get("upstream_alone")
    if up:
        lines += [
            "",
            "### The fake upstream alone",
            "",
            "| reply | c=10 req/s | c=100 req/s |",
            "|---|---|---|",
        ]
        for label in ("json", "sse20"):
            lines.append(
                f"| {label} | {up[f'{label}_c10']['rps']:.0f} | {up[f'{label}_c100']['rps']:.0f} |"
            )
    load = results.get("load")
    if load:
        lines += [
            "",
            f"### Load ({ROUNDS} alternating rounds of {load['seconds_per_point']:g} s per server and "
            f"point, {'wrk -t1' if m.get('load_generator') == 'wrk' else 'Python load generator'})",
            "",
            "`json`: `stream: false`; `sse20`: `stream: true`, 20 content chunks. Latencies in ms.",
            "",
            "| reply | workers | c | passthrough req/s | p50 | p99 | gateway req/s | p50 | p99 | gateway / passthrough |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for row in load["rows"]:
            pt, gw = row["passthrough"], row["gateway"]
            lines.append(
                f"| {row['mode']} | {row['workers']} | {row['c']} | {pt['rps']:.0f} | "
                f"{pt['p50_ms']:.2f} | {pt['p99_ms']:.2f} | {gw['rps']:.0f} | {gw['p50_ms']:.2f} | "
                f"{gw['p99_ms']:.2f} | {row['ratio'] * 100:.0f}% |"
            )
    latency = results.get("latency")
    if latency:
        lines += [
            "",
            f"### One call at a time (c=1, {latency['calls']} calls each, interleaved)",
            "",
            "| target | json p50 | json p99 | sse20 headers p50 | sse20 first chunk p50 | first chunk p99 | sse20 total p50 |",
            "|---|---|---|---|---|---|---|",
        ]
        for name in ("direct", "passthrough", "gateway"):
            j, s = latency["json"][name], latency["sse20"][name]
            lines.append(
                f"| {name} | {j['p50_ms']:.3f} | {j['p99_ms']:.3f} | {s['headers']['p50_ms']:.3f} | "
                f"{s['first_chunk']['p50_ms']:.3f} | {s['first_chunk']['p99_ms']:.3f} | "
                f"{s['total']['p50_ms']:.3f} |"
            )
        lines += [
            "",
            f"Added latency (median, JSON): gateway **{latency['added_ms']['gateway']:.3f} ms**, "
            f"passthrough {latency['added_ms']['passthrough']:.3f} ms.",
        ]
    streams = results.get("streams")
    if streams:
        lines += [
            "",
            f"### Held streams (one gateway worker, {streams['chunks_per_stream']} chunks, one a second)",
            "",
            "| streams | open at peak | completed | stalled | all open after s | max gap s (hold) | max gap s (while opening) | RSS idle MiB | RSS peak MiB | KB per stream | worker CPU |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for run in streams["runs"]:
            lines.append(
                f"| {run['streams']} | {run['peak_open']} | {run['completed']} | {run['stalled']} | "
                f"{run['ramp_s']} | {run['max_gap_hold_s']} | {run['max_gap_ramp_s']} | "
                f"{run['baseline_rss_kb'] / 1024:.0f} | "
                f"{run['peak_rss_kb'] / 1024:.0f} | {run['rss_per_stream_kb']} | "
                f"{run['worker_cpu_percent']}% |"
            )
    stateful = results.get("stateful")
    if stateful:
        lines += [
            "",
            f"### Stateful turn, {stateful['turns']}-turn transcript ({stateful['samples']} samples, ms)",
            "",
            "| store | stateless p50 | stateful p50 | stateful - stateless | the turn after it p50 "
            "| the turn after - stateless | stateless resending the history p50 |",
            "|---|---|---|---|---|---|---|",
        ]
        for store in ("sqlite", "redis"):
            r = stateful.get(store)
            if not r:
                continue
            if "skipped" in r:
                lines.append(f"| {store} | {r['skipped']} | | | | | |")
                continue
            lines.append(
                f"| {store} | {r['stateless']['p50_ms']:.3f} | {r['stateful']['p50_ms']:.3f} | "
                f"{r['slower_ms']:+.3f} | {r['stateful_next']['p50_ms']:.3f} | "
                f"{r['next_slower_ms']:+.3f} | {r['stateless_history']['p50_ms']:.3f} |"
            )
    return "\n".join(lines) + "\n"


def write_doc(text: str) -> None:
    DOC.parent.mkdir(parents=True, exist_ok=True)
    current = DOC.read_text() if DOC.exists() else f"# Benchmarks\n\n{DOC_BEGIN}\n{DOC_END}\n"
    if DOC_BEGIN not in current:
        current += f"\n{DOC_BEGIN}\n{DOC_END}\n"
    head, _, rest = current.partition(DOC_BEGIN)
    _, _, tail = rest.partition(DOC_END)
    DOC.write_text(f"{head}{DOC_BEGIN}\n{text}{DOC_END}{tail}")


def raise_fd_limit() -> None:
    """As ``ulimit -n`` would: held streams need a socket each here and two in the gateway."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 65536
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def profile(seconds: float) -> None:
    """Flame graphs of one gateway worker under wrk -c10 (JSON, then SSE): py-spy record."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        sys.exit("py-spy is not installed (pip install -r requirements-dev.txt)")
    load = Load(ensure_wrk(), seconds)
    TMP.mkdir(parents=True, exist_ok=True)
    with (
        running(start_upstream) as (upstream,),
        running(lambda: start_gateway(upstream, 1)) as (gateway,),
    ):
        (worker,) = gateway.workers()
        for name, payload in (
            ("json", body("openclaw")),
            ("sse20", body("openclaw/s20", stream=True)),
        ):
            load.run(gateway.port, payload, TOKEN, 10, 1)
            out = TMP / f"profile-gateway-{name}.svg"
            argv = [spy, "record", "--gil", "-r", "500", "-p", str(worker), "-o", str(out)]
            quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
            recorder = subprocess.Popen([*argv, "-d", f"{seconds:g}", "--nonblocking"], **quiet)
            result = load.run(gateway.port, payload, TOKEN, 10)
            recorder.wait()
            print(f"{name}: {result['rps']:.0f} req/s under py-spy -> {out.relative_to(ROOT)}")


def main() -> None:
    parser = argparse.ArgumentParser(description="Benchmark the gateway (see docs/benchmarks.md).")
    parser.add_argument("--quick", action="store_true", help="tiny run to check the harness")
    parser.add_argument(
        "--only", default="", help="comma list: upstream,load,latency,streams,stateful"
    )
    parser.add_argument("--seconds", type=float, default=None, help="seconds per load point")
    parser.add_argument(
        "--profile", action="store_true", help="only: py-spy flame graphs of a gateway worker"
    )
    args = parser.parse_args()
    if args.profile:
        raise_fd_limit()
        profile(args.seconds or 8.0)
        return
    quick = args.quick
    seconds = args.seconds or (1.0 if quick else 4.0)
    sections = set(filter(None, args.only.split(","))) or {
        "upstream",
        "load",
        "latency",
        "streams",
        "stateful",
    }
    raise_fd_limit()
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    stream_counts = (200, 500) if quick else (1000, 5000)
    if soft < 2 * max(stream_counts) + 100:
        print(f"open files limit is {soft}: fewer held streams")
        stream_counts = tuple(n for n in stream_counts if 2 * n + 100 <= soft) or (soft // 3,)

    started = time.time()
    command = "python -m bench.run" + (" --quick" if quick else "")
    results: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "make bench" if not quick and not args.only else command,
        "machine": machine(),
    }
    print(f"machine: {results['machine']}", flush=True)
    load = Load(ensure_wrk(), seconds)
    results["machine"]["load_generator"] = "wrk" if load.wrk else "python"
    with running(start_upstream) as (upstream,):
        if "upstream" in sections:
            results["upstream_alone"] = section_upstream_alone(load, upstream)
        if "load" in sections:
            results["load"] = section_load(load, upstream, (1, 10, 100))
        if "latency" in sections:
            results["latency"] = section_latency(upstream, 100 if quick else 600)
        if "streams" in sections:
            results["streams"] = section_streams(upstream, stream_counts)
        if "stateful" in sections:
            results["stateful"] = section_stateful(upstream, 20 if quick else 200)
    results["seconds"] = round(time.time() - started, 1)
    results["targets"] = targets(results)

    print("\n== targets ==")
    for check in results["targets"]:
        print(f"{'MET ' if check['met'] else 'MISS'}  {check['target']}: {check['measured']}")
    day = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
    full = not quick and not args.only and args.seconds is None
    out_dir = RESULTS if full else TMP
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{day}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    if full:
        write_doc(markdown(results))
        print(
            f"\nwrote {path.relative_to(ROOT)} and {DOC.relative_to(ROOT)} ({results['seconds']:.0f} s)"
        )
    else:
        (TMP / "benchmarks.md").write_text(markdown(results))
        print(
            f"\nwrote {path.relative_to(ROOT)} and bench/results/tmp/benchmarks.md (not the docs)"
        )


if __name__ == "__main__":
    main()
