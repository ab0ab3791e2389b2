"""``GET /v1/models`` and ``GET /v1/models/<id>``: the agents, listed as OpenAI models (SPEC 5)."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote

from flask import Blueprint, Response, request

from ..agent.errors import InvalidRequest, NotFound
from ..config import AGENT_ID_RE
from .context import gateway
from .errors import JSON_TYPE

bp = Blueprint("models", __name__)


def _model(model_id: str, created: int) -> dict[str, Any]:
    return {
        "id": model_id,
        "object": "model",
        "created": created,
        "owned_by": "openclaw",
        "permission": [],
    }


def _json(body: Any) -> Response:
    return Response(json.dumps(body, separators=(",", ":")), content_type=JSON_TYPE)


@bp.route("/v1/models", methods=["GET"], provide_automatic_options=False)
def list_models() -> Response:
    runtime = gateway()
    created = int(runtime.started_at)
    ids = ["openclaw", "openclaw/default"] + [f"openclaw/{a.id}" for a in runtime.settings.agents]
    return _json({"object": "list", "data": [_model(i, created) for i in ids]})


@bp.route("/v1/models/<path:model_id>", methods=["GET"], provide_automatic_options=False)
def get_model(model_id: str) -> Response:
    runtime = gateway()
    # The raw path keeps %2F apart from "/": decode it ourselves.
    raw = request.environ.get("RAW_URI") or request.environ.get("PATH_INFO", "")
    raw = raw.split("?", 1)[0]
    model_id = unquote(raw[len("/v1/models/") :]) if raw.startswith("/v1/models/") else model_id
    if model_id in ("openclaw", "openclaw/default"):
        return _json(_model(model_id, int(runtime.started_at)))
    prefix, _, agent_id = model_id.partition("/")
    if prefix != "openclaw" or not AGENT_ID_RE.match(agent_id.lower()):
        raise InvalidRequest("Invalid model id.", param="model")
    if runtime.settings.agent(agent_id.lower()) is None:
        raise NotFound(f"Model '{model_id}' not found.", param="model")
    return _json(_model(model_id, int(runtime.started_at)))
