"""The reliability suite's gateway, figures and checks.

One live gunicorn gateway (``rel_gateway``, session-scoped, one worker) takes the malformed input,
the upstream faults and the client faults; the load test starts its own two-worker gateway. Its
config has distinctive secrets (so a leak is unambiguous) and extra agents for the faults:

    main       -> the scriptable upstream (timeout 3 s)
    impatient  -> the same upstream with a 1 s timeout (stalls)
    down       -> a closed loopback port (connection refused)
    local      -> the built-in echo provider (the cheap "normal request right after")

``OPENCLAW_SOAK=1`` (``make soak``) scales every count and the load phase up; the figures of the
run are printed at the end (inputs tried, faults injected, requests served, errors by class,
turns lost) and lost turns, leaked secrets and worker restarts fail the run.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import sqlite3
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from tests.conftest import GatewayProcess, base_config, free_port, wait_until
from tests.reliability.figures import Figures
from tests.reliability.wire import Answer, Client
from tests.upstream import Upstream

SOAK = os.environ.get("OPENCLAW_SOAK") == "1"
FIGURES = pytest.StashKey[Figures]()

settings.register_profile(
    "reliability",
    deadline=None,
    derandomize=not SOAK,  # CI reproduces the same inputs; a soak explores new ones
    database=None,
    print_blob=True,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.function_scoped_fixture,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
        HealthCheck.large_base_example,
    ],
)


def scale(ci: int, soak: int | None = None) -> int:
    """Return ``ci`` in CI and ``soak`` (default 6x) under ``make soak``."""
    return (soak if soak is not None else ci * 6) if SOAK else ci


def examples(ci: int) -> settings:
    """Build a fuzz test's hypothesis settings: ``ci`` examples in CI, 6x under ``make soak``."""
    return settings(settings.get_profile("reliability"), max_examples=scale(ci))


def pytest_configure(config: pytest.Config) -> None:
    config.stash[FIGURES] = Figures()


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    figures = config.stash.get(FIGURES, None)
    if figures is None or not (figures.requests_served or figures.inputs_tried):
        return
    mode = "soak" if SOAK else "ci"
    terminalreporter.write_sep("=", f"reliability figures ({mode})")
    for line in figures.lines():
        terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def figures(pytestconfig: pytest.Config) -> Figures:
    return pytestconfig.stash[FIGURES]


@pytest.fixture(autouse=True)
def _figures_phase(request: pytest.FixtureRequest, figures: Figures) -> None:
    figures.phase = request.module.__name__.rpartition(".")[2].removeprefix("test_")


# --------------------------------------------------------------------------- the gateway


@dataclass
class RelGateway:
    """The reliability gateway with what tests need to look inside it."""

    process: GatewayProcess
    token: str
    provider_key: str
    figures: Figures
    client: Client
    worker_pid: int = 0
    # Session key -> run ids the suite saw succeed: each must be in the transcript at the end.
    turns: dict[str, list[str]] = field(default_factory=dict)

    @property
    def port(self) -> int:
        return self.process.port

    @property
    def db_path(self) -> Path:
        return self.process.state_dir / "gateway" / "sessions.sqlite3"

    def _db(self, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
        if not self.db_path.exists():
            return []
        with sqlite3.connect(self.db_path, timeout=5) as db:
            return db.execute(sql, args).fetchall()

    def transcript(self, session_key: str) -> list[dict[str, Any]]:
        rows = self._db("SELECT data FROM entries WHERE key = ? ORDER BY seq", (session_key,))
        return [json.loads(row[0]) for row in rows]

    def lease_held(self, session_key: str) -> bool:
        return bool(self._db("SELECT 1 FROM leases WHERE key = ?", (session_key,)))

    def runtime(self) -> dict[str, Any]:
        """Fetch this worker's figures from ``/debug/runtime`` (pid, greenlets, RSS, active runs)."""
        answer = self.client.request("GET", "/debug/runtime")
        assert answer.status == 200, answer
        return answer.json()  # type: ignore[no-any-return]

    def probe(self) -> dict[str, Any]:
        """Fetch ``/debug/runtime`` on a fresh connection (closed after), so it holds nothing open."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request("GET", "/debug/runtime", headers={"Authorization": f"Bearer {self.token}"})
            return json.loads(conn.getresponse().read())  # type: ignore[no-any-return]
        finally:
            conn.close()

    def turn(self, session_key: str, content: str, **payload: Any) -> Answer:
        """Send a stateful turn on ``session_key``; record a success for the turns-lost check."""
        body = {"model": "openclaw", "messages": [{"role": "user", "content": content}]}
        body.update(payload)
        answer = self.client.chat(body, {"x-openclaw-session-key": session_key})
        if answer.status == 200:
            self.record_turn(session_key, answer)
        return answer

    def record_turn(self, session_key: str, answer: Answer) -> None:
        self.turns.setdefault(session_key, []).append(_reply_text(answer))
        self.figures.turn_made()

    def assert_normal_request_succeeds(self) -> None:
        """Check that a well-formed request right after the abuse gets its normal answer."""
        answer = self.client.chat(
            {"model": "openclaw/local", "messages": [{"role": "user", "content": "still there?"}]}
        )
        assert answer.status == 200, answer
        assert answer.json()["choices"][0]["message"]["content"] == "echo: still there?"

    def assert_worker_unchanged(self) -> None:
        assert self.runtime()["pid"] == self.worker_pid, "the worker was replaced"

    def lost_turns(self) -> int:
        """Count successful turns the suite saw whose reply is not in their session's transcript."""
        lost = 0
        for key, replies in self.turns.items():
            stored = [e.get("text") for e in self.transcript(key) if e["role"] == "assistant"]
            for reply in replies:
                if reply in stored:
                    stored.remove(reply)
                else:
                    lost += 1
        return lost

    def half_written_sessions(self) -> list[str]:
        """List sessions whose stored entries are not whole turns (each run ends with its reply)."""
        bad = []
        counts = dict(self._db("SELECT key, message_count FROM sessions"))
        for key, message_count in counts.items():
            entries = self.transcript(key)
            if len(entries) != message_count:
                bad.append(key)
                continue
            runs: dict[str, list[str]] = {}
            for entry in entries:
                runs.setdefault(entry.get("run_id", ""), []).append(entry["role"])
            if any(roles[-1] != "assistant" for roles in runs.values()):
                bad.append(key)
        return bad


@pytest.fixture
def worker_stays_up(rel_gateway: RelGateway) -> Iterator[RelGateway]:
    """Check the test's abuse leaves the same worker up and a normal request succeeds after."""
    rel_gateway.assert_worker_unchanged()
    yield rel_gateway
    rel_gateway.assert_worker_unchanged()
    rel_gateway.assert_normal_request_succeeds()


def _reply_text(answer: Answer) -> str:
    if answer.headers.get("content-type", "").startswith("text/event-stream"):
        text = []
        for event in answer.sse_events():
            if event != b"[DONE]":
                for choice in json.loads(event).get("choices", []):
                    text.append(choice["delta"].get("content") or "")
        return "".join(text)
    return answer.json()["choices"][0]["message"]["content"]  # type: ignore[no-any-return]


def reliability_config(upstream: Upstream, token: str, provider_key: str) -> dict[str, Any]:
    config = base_config(upstream)
    config["gateway"]["auth"]["token"] = token
    providers = config["models"]["providers"]
    providers["up"]["apiKey"] = provider_key
    providers["impatient"] = dict(providers["up"], timeoutSeconds=1)
    providers["down"] = dict(providers["up"], baseUrl=f"http://127.0.0.1:{free_port()}/v1")
    config["agents"]["list"] += [
        {"id": "impatient", "model": "impatient/echo-model"},
        {"id": "down", "model": "down/echo-model"},
    ]
    # A held lease answers 409 after 5 s instead of 30: a leaked lease fails fast.
    config["session"] = {"lockWaitMs": 5000}
    return config


def check_log(process: GatewayProcess, secrets: tuple[str, ...], workers: int) -> list[str]:
    """List what is wrong in a gateway's captured output: secrets, tracebacks, dead workers."""
    log = process.log()
    problems = [f"secret #{i} in the log" for i, s in enumerate(secrets) if s in log]
    if "Traceback" in log:
        problems.append("a traceback in the log:\n" + log[log.index("Traceback") :][:3000])
    booted = len(re.findall(r"Booting worker", log))
    if booted != workers:
        problems.append(f"{booted} workers booted for {workers} (a worker died)")
    return problems


@pytest.fixture(scope="session")
def rel_gateway(
    upstream_server: Upstream, tmp_path_factory: pytest.TempPathFactory, figures: Figures
) -> Iterator[RelGateway]:
    token = f"rel-gw-token-{uuid.uuid4().hex}"
    provider_key = f"rel-up-key-{uuid.uuid4().hex}"
    figures.add_secrets(token, provider_key)
    config = reliability_config(upstream_server, token, provider_key)
    # Agent tools for the tool faults: a workspace of its own, two tool rounds at most.
    config["agents"]["list"].append(
        {
            "id": "tooly",
            "workspace": str(tmp_path_factory.mktemp("rel-workspace")),
            "tools": {"allow": ["current_time", "group:workspace", "web_fetch"]},
            "maxToolRounds": 2,
        }
    )
    process = GatewayProcess(config, tmp_path_factory.mktemp("reliability"))
    process.start()
    gw = RelGateway(process, token, provider_key, figures, Client(process.url, figures, token))
    start = gw.probe()
    gw.worker_pid = start["pid"]
    try:
        yield gw
        # Nothing the suite did left a greenlet behind (a hung run, watcher or connection).
        gw.client.pool.clear()
        wait_until(
            lambda: gw.probe()["greenlets"] <= start["greenlets"], 20, "greenlets at baseline"
        )
        end = gw.probe()
        figures.measured(
            f"reliability gateway greenlets: {start['greenlets']} at start, "
            f"{end['greenlets']} at the end; RSS {start['rssBytes'] / 2**20:.1f} MiB -> "
            f"{end['rssBytes'] / 2**20:.1f} MiB; active runs at the end: {end['activeRuns']}"
        )
        assert end["activeRuns"] == 0
        figures.turns_lost += gw.lost_turns()
        half_written = gw.half_written_sessions()
        problems = check_log(process, figures.secrets, workers=1)
    finally:
        process.stop()
    assert figures.turns_lost == 0, "turns lost (see the reliability figures)"
    assert not half_written, f"half-written sessions: {half_written}"
    assert not problems, problems
    assert not figures.secret_leaks, figures.secret_leaks[:5]
