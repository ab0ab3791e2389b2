"""CORS (SPEC 8): off unless ``gateway.http.cors.allowedOrigins`` lists origins.

When on, a preflight (``OPTIONS`` with ``Access-Control-Request-Method`` on a routed path from
an allowed origin) is answered before auth; every response to an allowed origin carries the CORS
headers, a stream's included (they go out with its headers, before the first event). Other
origins get nothing, and ``OPTIONS`` otherwise stays the plain 405 of SPEC 1.
"""

from __future__ import annotations

from flask import Flask, Response, request
from werkzeug.exceptions import MethodNotAllowed

EXPOSED_HEADERS = "X-Request-ID, Retry-After"
PREFLIGHT_MAX_AGE = "600"


class Cors:
    def __init__(self, allowed_origins: tuple[str, ...]) -> None:
        self.any_origin = "*" in allowed_origins
        self.origins = frozenset(o.rstrip("/").lower() for o in allowed_origins if o != "*")

    def allowed(self, origin: str | None) -> bool:
        if not origin:
            return False
        return self.any_origin or origin.rstrip("/").lower() in self.origins

    def preflight(self) -> Response | None:
        """Answer a preflight to a routed path (runs first among the request hooks)."""
        if request.method != "OPTIONS" or "Access-Control-Request-Method" not in request.headers:
            return None
        exc = request.routing_exception
        if not isinstance(exc, MethodNotAllowed) or not self.allowed(request.headers.get("Origin")):
            return None  # unknown path: 404; other origins: 405, both without CORS headers
        methods = [m for m in (exc.valid_methods or ()) if m != "OPTIONS"]
        requested = [
            h.strip() for h in request.headers.get("Access-Control-Request-Headers", "").split(",")
        ]
        headers = [h for h in requested if h]
        if not any(h.lower() == "authorization" for h in headers):
            headers.append("Authorization")
        response = Response(status=204)
        response.headers["Access-Control-Allow-Methods"] = ", ".join([*methods, "OPTIONS"])
        response.headers["Access-Control-Allow-Headers"] = ", ".join(headers)
        response.headers["Access-Control-Max-Age"] = PREFLIGHT_MAX_AGE
        return response

    def decorate(self, response: Response) -> Response:
        """Add the CORS headers to a response for an allowed origin."""
        response.vary.add("Origin")
        origin = request.headers.get("Origin")
        if self.allowed(origin):
            response.headers["Access-Control-Allow-Origin"] = origin or ""
            response.headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
        return response


def register_cors(app: Flask, allowed_origins: tuple[str, ...]) -> None:
    """Turn CORS on when origins are configured; call before the other request hooks."""
    if not allowed_origins:
        return
    cors = Cors(allowed_origins)
    app.before_request(cors.preflight)
    app.after_request(cors.decorate)
