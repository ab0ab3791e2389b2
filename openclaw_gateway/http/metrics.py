"""``GET /metrics``: Prometheus text format (SPEC 6), behind the gateway auth unless public."""

from __future__ import annotations

from flask import Blueprint, Flask, Response

from ..metrics import CONTENT_TYPE
from .context import gateway
from .hooks import public


def scrape() -> Response:
    response = Response(gateway().metrics.exposition(), content_type=CONTENT_TYPE)
    response.headers["Cache-Control"] = "no-store"
    return response


def register_metrics(app: Flask, is_public: bool) -> None:
    bp = Blueprint("metrics", __name__)
    view = public(scrape) if is_public else scrape
    bp.add_url_rule("/metrics", view_func=view, methods=["GET"], provide_automatic_options=False)
    app.register_blueprint(bp)
