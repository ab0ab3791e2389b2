"""The app's URL map answers exactly as werkzeug's, including the answers it keeps."""

from __future__ import annotations

from typing import Any

import pytest
from werkzeug.routing import Map, Rule

from openclaw_gateway import create_app
from openclaw_gateway.http.urlmap import GatewayMap


def _rules() -> list[Rule]:
    return [
        Rule("/v1/chat/completions", endpoint="chat", methods=["POST"]),
        Rule("/v1/models", endpoint="models", methods=["GET"]),
        Rule("/v1/models/<path:model>", endpoint="model", methods=["GET"]),
        Rule("/health", endpoint="health", methods=["GET", "HEAD"]),
        Rule("/docs/", endpoint="docs"),
        Rule("/old", endpoint="old", redirect_to="/health"),
        Rule("/page", endpoint="page", defaults={"n": 1}),
        Rule("/page/<int:n>", endpoint="page"),
        Rule("/", endpoint="ws", websocket=True),
    ]


PATHS = [
    "/v1/chat/completions",
    "/v1/chat/completions/",
    "/v1//chat/completions",
    "/v1/models",
    "/v1/models/up/bench",
    "/health",
    "/docs",
    "/docs/",
    "/old",
    "/page",
    "/page/3",
    "/page/x",
    "/",
    "/nowhere",
]
METHODS = ["GET", "POST", "HEAD", "OPTIONS", "DELETE"]


def _answer(url_map: Map, path: str, method: str, websocket: bool) -> Any:
    adapter = url_map.bind("gw.example", url_scheme="wss" if websocket else "https")
    try:
        return ("match", adapter.match(path, method, websocket=websocket))
    except Exception as exc:  # noqa: BLE001 - the exception is the answer being compared
        return ("raise", type(exc).__name__, getattr(exc, "new_url", None))


@pytest.mark.parametrize("websocket", [False, True])
def test_every_answer_is_werkzeugs_the_first_time_and_again(websocket):
    plain, ours = Map(_rules()), GatewayMap(_rules())
    for _ in range(2):  # the second round is served from what the first kept
        for path in PATHS:
            for method in METHODS:
                expected = _answer(plain, path, method, websocket)
                assert _answer(ours, path, method, websocket) == expected, (path, method)


def test_only_routes_without_variables_are_kept():
    ours = GatewayMap(_rules())
    for path in PATHS:
        _answer(ours, path, "GET", False)
    kept = {rule.rule for rule in ours._matcher._fixed.values()}
    assert kept == {"/v1/models", "/health", "/docs/", "/old"}


def test_a_rule_added_after_matching_began_is_matched():
    ours = GatewayMap([Rule("/<name>", endpoint="any")])
    assert _answer(ours, "/health", "GET", False)[1][0] == "any"
    ours.add(Rule("/health", endpoint="health"))
    assert _answer(ours, "/health", "GET", False)[1][0] == "health"


def test_the_app_uses_it(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENCLAW_STATE_DIR", str(tmp_path))
    assert isinstance(create_app({}).url_map, GatewayMap)
