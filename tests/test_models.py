"""SPEC 5: /v1/models and /v1/models/<id>, and the endpoints switched off."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest

from tests.conftest import GatewayProcess, base_config
from tests.rawhttp import AUTH, send

MODEL_KEYS = {"id", "object", "created", "owned_by", "permission"}


@pytest.fixture(scope="module")
def disabled_gateway(upstream_server, tmp_path_factory) -> Iterator[GatewayProcess]:
    config = base_config(upstream_server)
    config["gateway"]["http"]["endpoints"]["chatCompletions"]["enabled"] = False
    process = GatewayProcess(config, tmp_path_factory.mktemp("disabled")).start()
    yield process
    process.stop()


def _get(gateway, path: str, **headers: str):
    return send(gateway.port, "GET", path, {**AUTH, **headers})


def test_models_list_has_openclaw_default_then_every_agent(gateway):
    response = _get(gateway, "/v1/models")
    assert response.status == 200
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    body = response.json()
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == [
        "openclaw",
        "openclaw/default",
        "openclaw/main",
        "openclaw/writer",
        "openclaw/local",
    ]
    for model in body["data"]:
        assert set(model) == MODEL_KEYS
        assert model["object"] == "model"
        assert model["owned_by"] == "openclaw"
        assert model["permission"] == []
        assert isinstance(model["created"], int)


def test_models_list_with_the_sdk(client):
    assert [m.id for m in client.models.list()][-1] == "openclaw/local"


def test_models_list_needs_auth(gateway):
    assert send(gateway.port, "GET", "/v1/models").status == 401


@pytest.mark.parametrize(
    ("path", "model_id"),
    [
        ("/v1/models/openclaw", "openclaw"),
        ("/v1/models/openclaw/default", "openclaw/default"),
        ("/v1/models/openclaw/main", "openclaw/main"),
        ("/v1/models/openclaw%2Fmain", "openclaw/main"),
        ("/v1/models/openclaw%2fwriter", "openclaw/writer"),
        ("/v1/models/openclaw%2Fdefault", "openclaw/default"),
    ],
)
def test_get_model(gateway, path, model_id):
    response = _get(gateway, path)
    assert response.status == 200
    body = response.json()
    assert set(body) == MODEL_KEYS
    assert (body["id"], body["object"], body["owned_by"]) == (model_id, "model", "openclaw")


def test_get_model_with_the_sdk(client):
    # The SDK sends the id as it is; the gateway decodes %2F itself.
    assert client.models.retrieve("openclaw/writer").id == "openclaw/writer"


def test_get_model_needs_auth(gateway):
    assert send(gateway.port, "GET", "/v1/models/openclaw").status == 401


@pytest.mark.parametrize(
    "model_id", ["gpt-4o", "main", "openclaw%2F", "openclaw%2Fbad%20id", "agent%3Amain", "x/y/z"]
)
def test_get_model_of_another_form_is_400_invalid_model_id(gateway, model_id):
    response = _get(gateway, f"/v1/models/{model_id}")
    assert response.status == 400
    assert response.json()["error"]["message"] == "Invalid model id."
    assert response.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    ("path", "model_id"),
    [
        ("/v1/models/openclaw/nobody", "openclaw/nobody"),
        ("/v1/models/openclaw%2Fghost", "openclaw/ghost"),
    ],
)
def test_get_model_of_an_unknown_agent_is_404(gateway, path, model_id):
    response = _get(gateway, path)
    assert response.status == 404
    assert response.json()["error"]["message"] == f"Model '{model_id}' not found."


def test_unknown_model_is_the_sdk_not_found_error(client):
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("openclaw/nobody")


# ---- switched off


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/chat/completions"),
        ("GET", "/v1/models"),
        ("GET", "/v1/models/openclaw"),
        ("GET", "/v1/chat/completions"),
    ],
)
@pytest.mark.parametrize("authorization", [{}, AUTH])
def test_disabled_chat_completions_are_404_before_auth(
    disabled_gateway, method, path, authorization
):
    response = send(
        disabled_gateway.port, method, path, authorization, b"{}" if method == "POST" else None
    )
    assert response.status == 404
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.text == "Not Found"


def test_disabled_chat_completions_leave_health_up(disabled_gateway):
    assert send(disabled_gateway.port, "GET", "/healthz").status == 200
    assert send(disabled_gateway.port, "GET", "/readyz").status == 200
