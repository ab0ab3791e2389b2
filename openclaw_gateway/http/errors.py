"""The OpenAI error envelope, and OpenClaw's plain-text 404/405: the one place errors are shaped."""

from __future__ import annotations

import json
import logging

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound

from ..agent.errors import GatewayError, PayloadTooLarge, RunCancelled

log = logging.getLogger("openclaw_gateway.http")

JSON_TYPE = "application/json; charset=utf-8"
# nginx's "client closed request": the status a cancelled run leaves in the access log.
CLIENT_CLOSED_REQUEST = 499


def error_body(exc: GatewayError) -> bytes:
    return json.dumps({"error": exc.to_dict()}, separators=(",", ":")).encode()


def error_response(exc: GatewayError) -> Response:
    response = Response(error_body(exc), status=exc.status, content_type=JSON_TYPE)
    if exc.retry_after is not None:
        response.headers["Retry-After"] = str(exc.retry_after)
    if not exc.should_retry:
        response.headers["x-should-retry"] = "false"
    if isinstance(exc, PayloadTooLarge):
        response.headers["Connection"] = "close"
    return response


def plain_response(status: int, text: str) -> Response:
    return Response(text, status=status, content_type="text/plain; charset=utf-8")


def _allow_header(exc: MethodNotAllowed) -> str:
    methods = [m for m in (exc.valid_methods or ()) if m != "OPTIONS"]
    if request.path.startswith("/v1/"):
        methods = [m for m in methods if m != "HEAD"]
    order = ("GET", "HEAD", "POST")
    return ", ".join(sorted(methods, key=lambda m: order.index(m) if m in order else 9))


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(GatewayError)
    def gateway_error(exc: GatewayError) -> Response:
        return error_response(exc)

    @app.errorhandler(RunCancelled)
    def run_cancelled(exc: RunCancelled) -> Response:
        # The client left mid-run (SPEC 3): nobody reads this answer, and it is not a failure.
        return Response(b"", status=CLIENT_CLOSED_REQUEST)

    @app.errorhandler(NotFound)
    def not_found(exc: NotFound) -> Response:
        return plain_response(404, "Not Found")

    @app.errorhandler(MethodNotAllowed)
    def method_not_allowed(exc: MethodNotAllowed) -> Response:
        response = plain_response(405, "Method Not Allowed")
        response.headers["Allow"] = _allow_header(exc)
        return response

    @app.errorhandler(HTTPException)
    def http_exception(exc: HTTPException) -> Response:
        status = exc.code or 500
        if status == 413:
            return error_response(PayloadTooLarge())
        error = GatewayError(exc.description or "invalid request")
        error.status = status
        error.type = "invalid_request_error" if status < 500 else "api_error"
        return error_response(error)

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(GatewayError())
