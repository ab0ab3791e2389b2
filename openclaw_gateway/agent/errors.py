"""Every error a client can get back, with its HTTP status and OpenAI ``type``/``code``.

Raise one anywhere below the surfaces; HTTP renders it as the OpenAI envelope
``{"error": {"message", "type", "param", "code"}}`` (or an SSE error event once a stream
started), the WebSocket surface as a ``res`` error.

    GatewayError                      500 api_error          (base: "internal error")
    ├── InvalidRequest                400 invalid_request_error
    │   ├── InvalidModel              400 invalid_request_error  code=model_not_found
    │   └── MissingUserMessage        400 invalid_request_error
    ├── Unauthorized                  401 unauthorized         code=invalid_api_key
    ├── NotFound                      404 invalid_request_error  code=model_not_found
    ├── SessionBusy                   409 conflict             code=session_busy (+ Retry-After)
    ├── PayloadTooLarge               413 invalid_request_error  code=payload_too_large
    ├── RateLimited                   429 rate_limited         (+ Retry-After)
    ├── Unavailable                   503 unavailable          (draining, store down)
    └── UpstreamError                 502 api_error            code=upstream_error
        ├── UpstreamUnreachable       502 api_error            code=upstream_unreachable
        ├── UpstreamRateLimited       429 rate_limit_exceeded  code=upstream_rate_limited
        ├── UpstreamTimeout           504 api_error            code=upstream_timeout
        └── ToolRoundLimit            502 api_error            code=tool_round_limit

``RunCancelled`` is not an error a client sees: the client went away.
"""

from __future__ import annotations


class GatewayError(Exception):
    """A failure with the status, type and code a client receives."""

    status = 500
    type = "api_error"
    code: str | None = None
    message = "internal error"

    def __init__(
        self,
        message: str | None = None,
        *,
        param: str | None = None,
        code: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message or self.message)
        self.message = message or self.message
        self.param = param
        if code is not None:
            self.code = code
        self.retry_after = retry_after
        # Set by run_agent once the run may have changed state (agent tools ran).
        self.should_retry = True

    def to_dict(self) -> dict[str, object]:
        """Return the OpenAI error object (the value under ``"error"``)."""
        return {"message": self.message, "type": self.type, "param": self.param, "code": self.code}


class InvalidRequest(GatewayError):
    status = 400
    type = "invalid_request_error"
    message = "invalid request"


class InvalidModel(InvalidRequest):
    code = "model_not_found"


class MissingUserMessage(InvalidRequest):
    message = "Missing user message in `messages`."


class Unauthorized(GatewayError):
    status = 401
    type = "unauthorized"
    code = "invalid_api_key"
    message = "Unauthorized"


class NotFound(GatewayError):
    status = 404
    type = "invalid_request_error"
    code = "model_not_found"
    message = "not found"


class SessionBusy(GatewayError):
    status = 409
    type = "conflict"
    code = "session_busy"
    message = "Another run of this session is in progress; retry shortly."


class PayloadTooLarge(GatewayError):
    status = 413
    type = "invalid_request_error"
    code = "payload_too_large"
    message = "Payload too large"


class RateLimited(GatewayError):
    status = 429
    type = "rate_limited"
    message = "Too many failed authentication attempts. Please try again later."


class Unavailable(GatewayError):
    status = 503
    type = "unavailable"
    code = "unavailable"
    message = "The gateway is shutting down."


class UpstreamError(GatewayError):
    status = 502
    type = "api_error"
    code = "upstream_error"
    message = "The model provider returned an error."
    # A transient failure (connect error, timeout, 429, upstream 5xx, dropped connection): the
    # next model of the agent's chain may be tried, if nothing reached the client yet.
    retryable = False


class UpstreamUnreachable(UpstreamError):
    code = "upstream_unreachable"
    message = "The model provider could not be reached."
    retryable = True


class UpstreamRateLimited(UpstreamError):
    status = 429
    type = "rate_limit_exceeded"
    code = "upstream_rate_limited"
    message = "The model provider is rate limiting requests."
    retryable = True


class UpstreamTimeout(UpstreamError):
    status = 504
    code = "upstream_timeout"
    message = "The model provider timed out."
    retryable = True


class ToolRoundLimit(UpstreamError):
    """The model kept calling agent tools past the agent's ``maxToolRounds``."""

    code = "tool_round_limit"
    message = "The model kept calling tools past the agent's tool round limit."


class RunCancelled(Exception):
    """The caller went away (disconnect, abort): the run stops and writes nothing."""
