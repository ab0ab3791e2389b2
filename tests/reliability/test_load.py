"""Load: many concurrent streams plus JSON requests against two workers, with figures.

CI runs 200 concurrent streams plus 10 JSON clients plus 50 WebSocket sockets (each running
``agent`` turns in a loop on its own session) for 30 s (the 2-core budget of ``make test``);
``make soak`` runs the same for 10 minutes (``OPENCLAW_SOAK_SECONDS`` changes that). Asserted:
0 errors, 0 lost turns, every worker's greenlet count back to its baseline once the clients are
gone; under soak also RSS with a generous bound (no unbounded growth). RSS is measured after
warm-up and at the end and reported; there are no timing thresholds.
"""

from __future__ import annotations

import http.client
import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import websocket

from tests.conftest import GatewayProcess, base_config, wait_until
from tests.reliability.conftest import SOAK, RelGateway, check_log
from tests.reliability.figures import Figures
from tests.reliability.wire import Answer, Client
from tests.upstream import Upstream
from tests.wsclient import Closed, WsClient, ws_url

STREAMS = 200
JSON_CLIENTS = 10
WS_SOCKETS = 50
SECONDS = float(os.environ.get("OPENCLAW_SOAK_SECONDS", "600")) if SOAK else 30.0
WARM_UP = 30.0 if SOAK else 3.0
MiB = 1024 * 1024


@dataclass
class Tally:
    ok: int = 0
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def success(self) -> None:
        with self.lock:
            self.ok += 1

    def failure(self, what: str) -> None:
        with self.lock:
            self.errors.append(what)


def _workers(process: GatewayProcess) -> list[int]:
    assert process.proc is not None
    master = process.proc.pid
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return [int(pid) for pid in children]


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


def _greenlets_by_worker(gw: RelGateway, pids: list[int]) -> dict[int, int]:
    """Count each worker's live greenlets, probing fresh connections until every worker answers."""
    seen: dict[int, int] = {}

    def all_seen() -> bool:
        # A fresh connection per probe, so the kernel may hand it to either worker.
        figures = gw.probe()
        seen[figures["pid"]] = figures["greenlets"]
        return set(pids) <= set(seen)

    wait_until(all_seen, 30, "every worker to answer /debug/runtime")
    return seen


@pytest.fixture
def load_gateway(upstream: Upstream, tmp_path: Path, figures: Figures) -> Iterator[RelGateway]:
    figures.add_secrets("test-token", "upstream-secret-key")
    config = base_config(upstream)
    config["models"]["providers"]["up"]["timeoutSeconds"] = 60
    process = GatewayProcess(config, tmp_path, workers=2).start()
    gw = RelGateway(
        process,
        "test-token",
        "upstream-secret-key",
        figures,
        Client(process.url, figures, "test-token"),
    )
    try:
        yield gw
        lost = gw.lost_turns()
        figures.turns_lost += lost
        half_written = gw.half_written_sessions()
        problems = check_log(process, ("test-token", "upstream-secret-key"), workers=2)
    finally:
        process.stop()
    assert lost == 0, f"{lost} turns lost under load"
    assert not half_written, half_written
    assert not problems, problems


def _chat_body(content: str, stream: bool) -> bytes:
    return json.dumps(
        {"model": "openclaw", "stream": stream, "messages": [{"role": "user", "content": content}]}
    ).encode()


def _streamer(gw: RelGateway, n: int, tally: Tally, stop: threading.Event) -> None:
    """Stream turn after turn on one session, checking every stream."""
    session_key = f"load-stream-{n}"
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=60)
    headers = {
        "Authorization": "Bearer test-token",
        "Content-Type": "application/json",
        "x-openclaw-session-key": session_key,
    }
    turn = 0
    try:
        while not stop.is_set():
            turn += 1
            body = _chat_body(f"turn {turn} [[upstream:slow chunks=8 interval=0.25]]", True)
            try:
                conn.request("POST", "/v1/chat/completions", body, headers)
                response = conn.getresponse()
                answer = Answer(
                    response.status,
                    {k.lower(): v for k, v in response.getheaders()},
                    response.read(),
                )
            except (OSError, http.client.HTTPException) as exc:
                gw.figures.error(f"load stream: {type(exc).__name__}")
                tally.failure(f"stream {n}: {exc!r}")
                conn.close()
                continue
            gw.figures.observe(answer)
            events = answer.sse_events()
            if (
                answer.status != 200
                or not events
                or events[-1] != b"[DONE]"
                or any(b'"error"' in e for e in events)
            ):
                tally.failure(f"stream {n}: {answer.status} {answer.body!r}")
                continue
            gw.record_turn(session_key, answer)
            tally.success()
    finally:
        conn.close()


def _json_client(gw: RelGateway, n: int, tally: Tally, stop: threading.Event) -> None:
    """Send non-streaming requests, paced so the streams keep the CPU."""
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=60)
    headers = {"Authorization": "Bearer test-token", "Content-Type": "application/json"}
    i = 0
    try:
        while not stop.is_set():
            i += 1
            try:
                conn.request(
                    "POST", "/v1/chat/completions", _chat_body(f"json {n} {i}", False), headers
                )
                response = conn.getresponse()
                answer = Answer(
                    response.status,
                    {k.lower(): v for k, v in response.getheaders()},
                    response.read(),
                )
            except (OSError, http.client.HTTPException) as exc:
                gw.figures.error(f"load json: {type(exc).__name__}")
                tally.failure(f"json {n}: {exc!r}")
                conn.close()
                continue
            gw.figures.observe(answer)
            if (
                answer.status != 200
                or json.loads(answer.body)["choices"][0]["message"]["content"]
                != f"You said: json {n} {i}"
            ):
                tally.failure(f"json {n}: {answer.status} {answer.body[:300]!r}")
            else:
                tally.success()
            time.sleep(0.05)  # pacing, not waiting for a condition
    finally:
        conn.close()


def _ws_agent(gw: RelGateway, n: int, tally: Tally, stop: threading.Event) -> None:
    """Run ``agent`` turn after turn on one WS socket and session, checking every final answer."""
    session_key = f"load-ws-{n}"
    ws: WsClient | None = None
    turn = 0
    try:
        while not stop.is_set():
            turn += 1
            content = f"ws turn {turn} [[upstream:slow chunks=4 interval=0.25]]"
            try:
                if ws is None:
                    ws = WsClient(ws_url(gw.process.url), timeout=60)
                    hello = ws.connect(auth={"token": gw.token})
                    assert hello["ok"], hello
                request_id = ws.request(
                    "agent",
                    {
                        "message": content,
                        "idempotencyKey": uuid.uuid4().hex,
                        "sessionKey": session_key,
                    },
                )
                accepted = ws.response(request_id)
                final = ws.response(request_id) if accepted.get("ok") else accepted
                ws.events.clear()  # agent events: only the final answer is checked
            except (OSError, AssertionError, websocket.WebSocketException, Closed) as exc:
                gw.figures.error(f"load ws: {type(exc).__name__}")
                tally.failure(f"ws {n}: {exc!r}")
                if ws is not None:
                    ws.close()
                ws = None
                continue
            payload = final.get("payload") or {}
            gw.figures.observe_ws("res ok" if final.get("ok") else "res error", json.dumps(final))
            if not final.get("ok") or payload.get("status") != "ok":
                tally.failure(f"ws {n}: {final!r}")
                continue
            gw.turns.setdefault(session_key, []).append(payload["result"]["payloads"][0]["text"])
            gw.figures.turn_made()
            tally.success()
    finally:
        if ws is not None:
            ws.close()


def test_streams_and_json_under_load(
    load_gateway: RelGateway, upstream: Upstream, figures: Figures
) -> None:
    gw = load_gateway
    pids = _workers(gw.process)
    assert len(pids) == 2
    # Warm every worker (imports, pools, SQLite) before the baselines.
    warm = {"model": "openclaw", "messages": [{"role": "user", "content": "warm"}]}
    for _ in range(20):
        assert gw.client.chat(warm).status == 200
    gw.client.pool.clear()  # idle keep-alive connections hold a greenlet each
    baseline = _greenlets_by_worker(gw, pids)

    tally = Tally()
    stop = threading.Event()
    participants: list[Callable[[int], None]] = [
        *[lambda n: _streamer(gw, n, tally, stop)] * STREAMS,
        *[lambda n: _json_client(gw, n, tally, stop)] * JSON_CLIENTS,
        *[lambda n: _ws_agent(gw, n, tally, stop)] * WS_SOCKETS,
    ]
    threads = [
        threading.Thread(target=run, args=(n,), daemon=True) for n, run in enumerate(participants)
    ]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    time.sleep(WARM_UP)  # the load phase's own clock: warm-up, then the rest of the phase
    warm_rss = {pid: _rss(pid) for pid in pids}
    time.sleep(max(0.0, SECONDS - WARM_UP))
    stop.set()
    for thread in threads:
        thread.join(timeout=60)
    elapsed = time.monotonic() - started
    end_rss = {pid: _rss(pid) for pid in pids}
    after = _greenlets_by_worker(gw, pids)
    # Once the clients are gone every worker is back to its baseline (nothing left behind).
    wait_until(
        lambda: all(v <= baseline[p] for p, v in _greenlets_by_worker(gw, pids).items()),
        20,
        "greenlets back to baseline",
    )

    figures.tried("load: requests", tally.ok + len(tally.errors))
    rss = ", ".join(
        f"pid {p}: {warm_rss[p] / MiB:.1f} MiB after warm-up -> {end_rss[p] / MiB:.1f} MiB at end"
        for p in pids
    )
    figures.measured(
        f"load ({'soak' if SOAK else 'ci'}): {STREAMS} concurrent streams + {JSON_CLIENTS} JSON "
        f"clients + {WS_SOCKETS} WS sockets (agent turns) on 2 workers for {elapsed:.0f} s: {tally.ok} ok, {len(tally.errors)} errors"
    )
    figures.measured(f"load RSS: {rss}")
    figures.measured(
        f"load greenlets per worker: baseline {baseline}, right after the load {after}"
    )
    assert not any(t.is_alive() for t in threads), "a load client hung"
    assert not tally.errors, (tally.errors[:2], upstream.errors[:5])
    assert tally.ok > STREAMS
    if SOAK:
        for pid in pids:
            assert end_rss[pid] < warm_rss[pid] * 1.5 + 64 * MiB, f"worker {pid} RSS kept growing"
