"""Frames of the OpenClaw Gateway protocol (SPEC 7): shapes, error codes, closed params objects.

request   {"type": "req", "id", "method", "params"}
response  {"type": "res", "id", "ok": true, "payload"}
          {"type": "res", "id", "ok": false, "error": {"code", "message", "details"?}}
event     {"type": "event", "event", "payload", "seq"}
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..agent.errors import (
    GatewayError,
    InvalidRequest,
    RateLimited,
    SessionBusy,
    Unauthorized,
    UpstreamTimeout,
)
from ..wire import decode_json

PROTOCOL_VERSIONS = (3, 4)

INVALID_REQUEST = "INVALID_REQUEST"
FORBIDDEN = "FORBIDDEN"
NOT_PAIRED = "NOT_PAIRED"
UNAVAILABLE = "UNAVAILABLE"
AGENT_TIMEOUT = "AGENT_TIMEOUT"

# Close codes this surface sends.
CLOSE_NORMAL = 1000
CLOSE_PROTOCOL = 1002
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
CLOSE_RESTART = 1012


class WsError(Exception):
    """A request that fails with an error ``res``; ``close`` set: the socket closes after it."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        details: Mapping[str, Any] | None = None,
        close: int | None = None,
        request_id: str = "",
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = dict(details) if details else None
        self.close = close
        # The id of the req this answers, when the frame was readable enough to have one.
        self.request_id = request_id

    def to_dict(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            error["details"] = self.details
        return error


def from_gateway_error(exc: GatewayError) -> WsError:
    """Map a core error (HTTP status/type) to the WS error code a client expects."""
    if isinstance(exc, UpstreamTimeout):
        code = AGENT_TIMEOUT
    elif isinstance(exc, Unauthorized | RateLimited):
        code = INVALID_REQUEST
    elif isinstance(exc, InvalidRequest):
        code = INVALID_REQUEST
    elif isinstance(exc, SessionBusy) or exc.status >= 500 or exc.status == 429:
        code = UNAVAILABLE
    else:
        code = INVALID_REQUEST
    details: dict[str, Any] = {"type": exc.type}
    if exc.code:
        details["reason"] = exc.code
    if exc.retry_after is not None:
        details["retryAfterMs"] = exc.retry_after * 1000
    return WsError(code, exc.message, details=details)


def invalid(message: str, **kwargs: Any) -> WsError:
    return WsError(INVALID_REQUEST, message, **kwargs)


def _jsonable(value: Any) -> Any:
    """Encode what events carry besides plain JSON (``Usage`` and other dataclasses)."""
    to_openai = getattr(value, "to_openai", None)
    if callable(to_openai):
        return to_openai()
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict):
        return to_dict()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)


def encode(frame: Mapping[str, Any]) -> str:
    return json.dumps(frame, separators=(",", ":"), ensure_ascii=False, default=_jsonable)


def response(request_id: str, payload: Any) -> dict[str, Any]:
    return {"type": "res", "id": request_id, "ok": True, "payload": payload}


def error_response(request_id: str, error: WsError, payload: Any = None) -> dict[str, Any]:
    frame: dict[str, Any] = {"type": "res", "id": request_id, "ok": False}
    if payload is not None:
        frame["payload"] = payload
    frame["error"] = error.to_dict()
    return frame


@dataclass(frozen=True, slots=True)
class Request:
    id: str
    method: str
    params: dict[str, Any]


def _salvage_id(text: str) -> str:
    """The ``id`` of a frame refused by the strict decoder (e.g. for a NaN), so the client can
    match the error to its request; empty when there is none to find."""
    try:
        frame = json.loads(text)
    except (ValueError, RecursionError):
        return ""
    request_id = frame.get("id") if isinstance(frame, dict) else None
    return request_id if isinstance(request_id, str) else ""


def parse_request(text: Any) -> Request:
    """A ``req`` frame, or ``INVALID_REQUEST`` naming what is wrong with it."""
    if not isinstance(text, str):
        raise invalid("expected a text frame")
    try:
        frame = decode_json(text)
    except ValueError as exc:
        raise invalid(f"invalid JSON: {exc}", request_id=_salvage_id(text)) from None
    if not isinstance(frame, dict) or frame.get("type") != "req":
        raise invalid("expected a req frame")
    request_id, method = frame.get("id"), frame.get("method")
    if not isinstance(request_id, str) or not request_id:
        raise invalid("req.id: expected a non-empty string")
    if not isinstance(method, str) or not method:
        raise invalid("req.method: expected a non-empty string", details={"id": request_id})
    params = frame.get("params", {})
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise invalid("req.params: expected an object")
    return Request(request_id, method, params)


_KINDS: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "object": (dict,),
    "array": (list,),
}


class Params:
    """A closed params object: every key must be declared; read values by kind.

    ``Params(raw, "agent", {"message": "string", "timeout": "integer"})`` raises
    ``INVALID_REQUEST`` for any other key and for a value of the wrong kind.
    """

    def __init__(self, raw: Mapping[str, Any], where: str, schema: Mapping[str, str]) -> None:
        for key in raw:
            if key not in schema:
                # Worded as OpenClaw's schema validator words it (JSON pointer to the spot).
                raise invalid(f"invalid {where} params: at root: unexpected property '{key}'")
        for key, kind in schema.items():
            value = raw.get(key)
            if value is None or kind == "any":
                continue
            ok = isinstance(value, _KINDS[kind]) and not (
                isinstance(value, bool) and kind in ("integer", "number")
            )
            if kind == "integer" and isinstance(value, float) and value.is_integer():
                ok = True
            if not ok:
                raise invalid(f"invalid {where} params: at /{key}: must be {kind}")
        self.raw = raw
        self.where = where

    def get(self, key: str, default: Any = None) -> Any:
        value = self.raw.get(key)
        return default if value is None else value

    def required(self, key: str) -> Any:
        value = self.raw.get(key)
        if value is None or value == "":
            raise invalid(f"invalid {self.where} params: must have required property '{key}'")
        return value

    def number(self, key: str, default: float, lo: float, hi: float) -> float:
        value = self.raw.get(key)
        if value is None:
            return default
        if not lo <= value <= hi:  # an int too big for a float compares fine here
            raise invalid(f"invalid {self.where} params: '{key}' must be from {lo:g} to {hi:g}")
        return float(value)

    def integer(self, key: str, default: int | None, lo: int, hi: int) -> int | None:
        value = self.raw.get(key)
        if value is None:
            return default
        value = int(value)
        if not lo <= value <= hi:
            raise invalid(f"invalid {self.where} params: '{key}' must be from {lo} to {hi}")
        return value
