"""Sessions across real gunicorn gateways: workers and hosts sharing a store, locks, crashes.

Each gateway kind is started once for the module: SQLite (two workers sharing the file) and Redis
(two workers), plus a second Redis-backed instance on another port sharing the first one's Redis
(a second host behind a load balancer) with a short ``lockWaitMs`` for the 409 test.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import pytest
import urllib3

from openclaw_gateway.agent.types import SessionStore
from openclaw_gateway.sessions.redis import RedisSessionStore
from openclaw_gateway.sessions.sqlite import SqliteSessionStore
from tests.conftest import ROOT, TOKEN, GatewayProcess, base_config, unique, wait_until
from tests.upstream import Upstream

LOCK_TTL_MS = 2000
MAX_TURNS = 2


def session_config(upstream: Upstream, session: dict[str, Any]) -> dict[str, Any]:
    """The standard config plus: a short lease TTL, few upstream-bound turns, and a limiter that
    counts proxied client IPs (tests pick their own via X-Forwarded-For)."""
    config = base_config(upstream, trustedProxies=["127.0.0.1"])
    config["gateway"]["auth"]["rateLimit"] = {
        "exemptLoopback": False,
        "maxAttempts": 3,
        "lockoutMs": 600_000,
    }
    config["session"] = {"lockTtlMs": LOCK_TTL_MS, "maxTurns": MAX_TURNS, **session}
    return config


@dataclass
class Deployment:
    kind: str
    primary: GatewayProcess  # two workers
    store: SessionStore  # the same store, opened by the test
    secondary: GatewayProcess | None = None  # Redis only: another "host", lockWaitMs 300


@pytest.fixture(scope="module")
def redis_deployment(
    upstream_server: Upstream,
    redis_url: str,
    redis_prefix: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Deployment]:
    session = {"store": redis_url, "keyPrefix": redis_prefix + "gw:"}
    primary = GatewayProcess(
        session_config(upstream_server, session), tmp_path_factory.mktemp("redis-a"), workers=2
    )
    secondary = GatewayProcess(
        session_config(upstream_server, {**session, "lockWaitMs": 300}),
        tmp_path_factory.mktemp("redis-b"),
    )
    store = RedisSessionStore(redis_url, key_prefix=session["keyPrefix"])
    try:
        primary.start()
        secondary.start()
        yield Deployment("redis", primary, store, secondary)
    finally:
        primary.stop()
        secondary.stop()
        store.close()


@pytest.fixture(scope="module")
def sqlite_deployment(
    upstream_server: Upstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    tmp = tmp_path_factory.mktemp("sqlite")
    path = str(tmp / "sessions.sqlite3")
    primary = GatewayProcess(
        session_config(upstream_server, {"store": "sqlite", "sqlitePath": path}), tmp, workers=2
    )
    store = SqliteSessionStore(path)
    try:
        primary.start()
        yield Deployment("sqlite", primary, store)
    finally:
        primary.stop()
        store.close()


@pytest.fixture(params=["sqlite", "redis"])
def deployment(request: pytest.FixtureRequest) -> Deployment:
    return request.getfixturevalue(f"{request.param}_deployment")  # type: ignore[no-any-return]


def chat(
    gateway: GatewayProcess,
    text: str,
    *,
    history: list[dict[str, str]] | None = None,
    **headers: str,
) -> str:
    client = gateway.client(default_headers=headers)
    reply = client.chat.completions.create(
        model="openclaw", messages=[*(history or []), {"role": "user", "content": text}]
    )
    return reply.choices[0].message.content or ""


def turns(store: SessionStore, key: str) -> list[tuple[str, str]]:
    return [(entry["role"], entry["text"]) for entry in store.load(key)]


def worker_pids(gateway: GatewayProcess) -> list[int]:
    """The gunicorn workers: the master's children."""
    assert gateway.proc is not None
    master = gateway.proc.pid
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{name}/stat").read_text()
        except OSError:
            continue
        # The command name is in parentheses and may contain spaces: fields follow the last ")".
        if int(stat.rsplit(")", 1)[1].split()[1]) == master:
            pids.append(int(name))
    return pids


def send_without_waiting(gateway: GatewayProcess, body: dict[str, Any], **headers: str) -> socket:
    """Send a chat request on a raw socket and return it unread (closing it cancels the run)."""
    payload = json.dumps(body).encode()
    head = [
        "POST /v1/chat/completions HTTP/1.1",
        f"Host: 127.0.0.1:{gateway.port}",
        f"Authorization: Bearer {TOKEN}",
        "Content-Type: application/json",
        f"Content-Length: {len(payload)}",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    sock = socket.create_connection(("127.0.0.1", gateway.port), timeout=30)
    sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + payload)
    return sock


def in_flight(upstream: Upstream, marker: str) -> bool:
    return any(marker in json.dumps(r.body) for r in upstream.requests if r.body)


# ---------------------------------------------------------------------------------------------


def test_fifty_concurrent_turns_of_one_session_land_once_in_order_one_at_a_time(
    deployment, upstream
):
    key, tag = unique("race"), unique("tag")
    http = urllib3.PoolManager(maxsize=50, retries=False, timeout=urllib3.Timeout(60))
    url = deployment.primary.url + "/v1/chat/completions"
    headers = {"Authorization": f"Bearer {TOKEN}", "x-openclaw-session-key": key}

    def turn(i: int) -> tuple[int, str]:
        body = {
            "model": "openclaw",
            "messages": [{"role": "user", "content": f"[[tag:{tag}]] {i}"}],
        }
        response = http.request("POST", url, body=json.dumps(body), headers=headers)
        reply = json.loads(response.data)
        return response.status, reply["choices"][0]["message"]["content"]

    with ThreadPoolExecutor(50) as pool:
        results = list(pool.map(turn, range(50)))

    assert [status for status, _ in results] == [200] * 50
    assert [text for _, text in results] == [f"You said: [[tag:{tag}]] {i}" for i in range(50)]
    stored = turns(deployment.store, key)
    assert len(stored) == 100
    assert [role for role, _ in stored] == ["user", "assistant"] * 50
    users = [text for _, text in stored[0::2]]
    assert sorted(users) == sorted(f"[[tag:{tag}]] {i}" for i in range(50))
    assert [text for _, text in stored[1::2]] == [f"You said: {u}" for u in users]
    # The order stored is the order the runs reached the model.
    seen = [r.body["messages"][-1]["content"] for r in upstream.requests if tag in str(r.body)]
    assert seen == users
    assert upstream.max_concurrent[tag] == 1


def test_run_longer_than_the_lease_ttl_keeps_its_lease_until_it_ends(deployment, upstream):
    key, tag = unique("long"), unique("tag")
    headers = {"x-openclaw-session-key": key}
    # About 3 s of streaming, longer than lockTtlMs: only the heartbeat keeps the lease.
    slow = f"[[tag:{tag}]] [[upstream:slow interval=0.4 chunks=8 text=a_slow_reply]]"
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(chat, deployment.primary, slow, **headers)
        wait_until(lambda: in_flight(upstream, tag), what="the slow run to start")
        second = chat(deployment.primary, f"[[tag:{tag}]] next", **headers)
        assert first.result() == "a_slow_reply"
    assert second == f"You said: [[tag:{tag}]] next"
    assert upstream.max_concurrent[tag] == 1
    assert [text for _, text in turns(deployment.store, key)] == [
        slow,
        "a_slow_reply",
        f"[[tag:{tag}]] next",
        f"You said: [[tag:{tag}]] next",
    ]


def test_worker_killed_mid_run_keeps_earlier_turns_and_its_lease_expires(deployment, upstream):
    key = unique("crash")
    headers = {"x-openclaw-session-key": key}
    assert chat(deployment.primary, "first", **headers) == "You said: first"
    marker = unique("stalled")
    body = {
        "model": "openclaw",
        "messages": [{"role": "user", "content": f"{marker} [[upstream:stall seconds=30]]"}],
    }
    sock = send_without_waiting(deployment.primary, body, **headers)
    wait_until(lambda: in_flight(upstream, marker), what="the run to reach the upstream")
    for pid in worker_pids(deployment.primary):
        os.kill(pid, signal.SIGKILL)  # the worker running the turn is among them
    sock.close()

    # Waits for the dead run's lease to expire (lockTtlMs), then runs.
    assert chat(deployment.primary, "third", **headers) == "You said: third"
    assert turns(deployment.store, key) == [
        ("user", "first"),
        ("assistant", "You said: first"),
        ("user", "third"),
        ("assistant", "You said: third"),
    ]


def test_failed_run_appends_nothing(deployment, upstream):
    key = unique("failed")
    headers = {"x-openclaw-session-key": key}
    chat(deployment.primary, "kept", **headers)
    with pytest.raises(openai.InternalServerError):
        chat(deployment.primary, "[[upstream:error status=500]]", **headers)
    assert turns(deployment.store, key) == [("user", "kept"), ("assistant", "You said: kept")]


def test_run_cancelled_mid_stream_appends_nothing(deployment, upstream):
    key = unique("cancelled")
    headers = {"x-openclaw-session-key": key}
    chat(deployment.primary, "kept", **headers)
    client = deployment.primary.client(default_headers=headers)
    stream = client.chat.completions.create(
        model="openclaw",
        stream=True,
        messages=[{"role": "user", "content": "[[upstream:stall_after_first_chunk seconds=30]]"}],
    )
    assert any(chunk.choices and chunk.choices[0].delta.content for chunk in stream)
    stream.close()  # the client leaves with the reply half streamed
    upstream.wait_for(lambda u: u.disconnects_during_response >= 1)
    # The next turn takes the lease only once the cancelled run has let it go.
    assert chat(deployment.primary, "after", **headers) == "You said: after"
    assert turns(deployment.store, key) == [
        ("user", "kept"),
        ("assistant", "You said: kept"),
        ("user", "after"),
        ("assistant", "You said: after"),
    ]


def test_upstream_gets_the_newest_max_turns_while_the_transcript_stays_whole(deployment, upstream):
    user = unique("long")
    for text in ("one", "two", "three"):
        deployment.primary.client().chat.completions.create(
            model="openclaw", user=user, messages=[{"role": "user", "content": text}]
        )
    sent = upstream.requests[-1].body["messages"]
    assert [(m["role"], m["content"]) for m in sent] == [
        ("user", "two"),
        ("assistant", "You said: two"),
        ("user", "three"),
    ]
    key = f"agent:main:openai-user:{user}"
    assert [text for _, text in turns(deployment.store, key)] == [
        "one",
        "You said: one",
        "two",
        "You said: two",
        "three",
        "You said: three",
    ]


def test_cli_lists_shows_and_deletes_sessions(deployment, upstream):
    key = unique("cli")
    chat(deployment.primary, "remember me", **{"x-openclaw-session-key": key})

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "openclaw_gateway", "sessions", *args],
            cwd=ROOT,
            env=deployment.primary.env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    listed = cli("list")
    assert listed.returncode == 0, listed.stderr
    assert f"{key}\tmain\t2\t" in listed.stdout
    shown = cli("show", key)
    assert shown.returncode == 0, shown.stderr
    entries = [json.loads(line) for line in shown.stdout.splitlines()]
    assert [(e["role"], e["text"]) for e in entries] == [
        ("user", "remember me"),
        ("assistant", "You said: remember me"),
    ]
    deleted = cli("delete", key)
    assert deleted.returncode == 0, deleted.stderr
    assert deployment.store.load(key) == []
    assert key not in [info.key for info in deployment.store.list_sessions()]
    for action in ("delete", "show"):
        again = cli(action, key)
        assert again.returncode == 1
        assert f"no session {key}" in again.stderr


# --------------------------------------------------------------------------------- Redis only


def test_user_session_started_on_one_host_continues_on_the_other(redis_deployment, upstream):
    user = unique("roaming")
    first, second = redis_deployment.primary, redis_deployment.secondary
    assert second is not None
    first.client().chat.completions.create(
        model="openclaw", user=user, messages=[{"role": "user", "content": "on host a"}]
    )
    second.client().chat.completions.create(
        model="openclaw", user=user, messages=[{"role": "user", "content": "on host b"}]
    )
    sent = upstream.requests[-1].body["messages"]
    assert [(m["role"], m["content"]) for m in sent] == [
        ("user", "on host a"),
        ("assistant", "You said: on host a"),
        ("user", "on host b"),
    ]


def test_host_returning_to_a_session_sees_the_turns_the_other_host_added(
    redis_deployment, upstream
):
    user = unique("roaming")
    first, second = redis_deployment.primary, redis_deployment.secondary
    assert second is not None
    for gateway, text in ((second, "b1"), (first, "a1"), (second, "b2")):
        gateway.client().chat.completions.create(
            model="openclaw", user=user, messages=[{"role": "user", "content": text}]
        )
    # maxTurns is 2: the newest two turns, the middle one written by the other host.
    sent = upstream.requests[-1].body["messages"]
    assert [m["content"] for m in sent] == ["a1", "You said: a1", "b2"]


def test_session_deleted_elsewhere_starts_afresh_on_a_host_that_had_used_it(
    redis_deployment, upstream
):
    user = unique("deleted")
    second = redis_deployment.secondary
    assert second is not None
    client = second.client()
    client.chat.completions.create(
        model="openclaw", user=user, messages=[{"role": "user", "content": "before"}]
    )
    assert redis_deployment.store.delete(f"agent:main:openai-user:{user}")
    client.chat.completions.create(
        model="openclaw", user=user, messages=[{"role": "user", "content": "after"}]
    )
    assert [m["content"] for m in upstream.requests[-1].body["messages"]] == ["after"]


def test_auth_lockout_on_one_host_applies_on_the_other(redis_deployment, http):
    first, second = redis_deployment.primary, redis_deployment.secondary
    assert second is not None
    client_ip = f"198.51.100.{uuid.uuid4().int % 250 + 1}, 203.0.113.{uuid.uuid4().int % 250 + 1}"

    def models(gateway: GatewayProcess, token: str) -> urllib3.BaseHTTPResponse:
        return http.request(
            "GET",
            gateway.url + "/v1/models",
            headers={"Authorization": f"Bearer {token}", "X-Forwarded-For": client_ip},
        )

    statuses = [models(first, "wrong").status for _ in range(3)]
    assert statuses == [401, 401, 429]
    locked = models(second, TOKEN)
    assert locked.status == 429
    assert int(locked.headers["Retry-After"]) > 0
    assert json.loads(locked.data)["error"]["type"] == "rate_limited"
    assert models(second, TOKEN).status == 429
    # Another client is not affected.
    assert (
        http.request(
            "GET", second.url + "/v1/models", headers={"Authorization": f"Bearer {TOKEN}"}
        ).status
        == 200
    )


def test_auth_success_on_one_host_resets_the_failures_counted_on_the_other(redis_deployment, http):
    first, second = redis_deployment.primary, redis_deployment.secondary
    assert second is not None
    client_ip = f"192.0.2.{uuid.uuid4().int % 250 + 1}, 203.0.113.{uuid.uuid4().int % 250 + 1}"

    def models(gateway: GatewayProcess, token: str) -> int:
        headers = {"Authorization": f"Bearer {token}", "X-Forwarded-For": client_ip}
        return http.request("GET", gateway.url + "/v1/models", headers=headers).status

    assert [models(first, "wrong"), models(first, "wrong")] == [401, 401]
    assert models(second, TOKEN) == 200
    assert [models(first, "wrong"), models(first, "wrong")] == [401, 401]


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_run_that_cannot_take_the_lease_in_time_gets_409_with_retry_after(
    redis_deployment, upstream, stream
):
    key, marker = unique("busy"), unique("holder")
    second = redis_deployment.secondary
    assert second is not None
    body = {
        "model": "openclaw",
        "messages": [{"role": "user", "content": f"{marker} [[upstream:stall seconds=30]]"}],
    }
    holder = send_without_waiting(redis_deployment.primary, body, **{"x-openclaw-session-key": key})
    try:
        wait_until(lambda: in_flight(upstream, marker), what="the first run to hold the lease")
        client = second.client(default_headers={"x-openclaw-session-key": key})
        with pytest.raises(openai.ConflictError) as busy:
            client.chat.completions.create(
                model="openclaw", stream=stream, messages=[{"role": "user", "content": "me too"}]
            )
    finally:
        holder.close()  # the client leaves: the first run is cancelled and stores nothing
    response = busy.value.response
    assert response.status_code == 409
    assert int(response.headers["Retry-After"]) >= 1
    assert response.json() == {
        "error": {
            "message": "Another run of this session is in progress; retry shortly.",
            "type": "conflict",
            "param": None,
            "code": "session_busy",
        }
    }
    # Once the first run is gone the session answers again, with nothing of either run stored.
    assert chat(second, "now", **{"x-openclaw-session-key": key}) == "You said: now"
    assert turns(redis_deployment.store, key) == [("user", "now"), ("assistant", "You said: now")]
