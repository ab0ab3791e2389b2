"""The handshake (SPEC 7): challenge, ``connect``, protocol, shared-secret auth, device signature.

Auth is the HTTP surface's: ``gateway.guard.verify(client_ip, secret)`` (so the failure limiter
counts WebSocket failures too) with the client IP from ``gateway.client_ips``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import time
import uuid
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from .. import __version__
from ..agent.errors import RateLimited, Unauthorized
from ..runtime import Gateway
from .protocol import (
    CLOSE_POLICY,
    CLOSE_PROTOCOL,
    CLOSE_RESTART,
    PROTOCOL_VERSIONS,
    UNAVAILABLE,
    Params,
    Request,
    WsError,
    invalid,
)

DEFAULT_SCOPES = ("operator.read", "operator.write")
SIGNATURE_MAX_AGE_MS = 10 * 60 * 1000
EVENTS = ("connect.challenge", "agent", "chat", "tick", "shutdown")

CONNECT_PARAMS = {
    "minProtocol": "integer",
    "maxProtocol": "integer",
    "client": "object",
    "caps": "array",
    "commands": "array",
    "permissions": "object",
    "pathEnv": "string",
    "role": "string",
    "scopes": "array",
    "device": "object",
    "auth": "object",
    "locale": "string",
    "userAgent": "string",
}
CLIENT_PARAMS = {
    "id": "string",
    "displayName": "string",
    "version": "string",
    "platform": "string",
    "deviceFamily": "string",
    "modelIdentifier": "string",
    "mode": "string",
    "instanceId": "string",
}
AUTH_PARAMS = {
    "token": "string",
    "bootstrapToken": "string",
    "deviceToken": "string",
    "password": "string",
}
DEVICE_PARAMS = {
    "id": "string",
    "publicKey": "string",
    "signature": "string",
    "signedAt": "integer",
    "nonce": "string",
}


@dataclass(frozen=True, slots=True)
class Challenge:
    nonce: str
    ts: int

    @classmethod
    def new(cls) -> Challenge:
        return cls(str(uuid.uuid4()), int(time.time() * 1000))

    def payload(self) -> dict[str, Any]:
        return {"nonce": self.nonce, "ts": self.ts}


@dataclass(frozen=True, slots=True)
class Hello:
    """What a successful ``connect`` settled."""

    protocol: int
    role: str
    scopes: tuple[str, ...]
    client_id: str
    device_id: str | None


def _fail(message: str, *, close: int = CLOSE_POLICY, **details: Any) -> WsError:
    return invalid(message, details=details or None, close=close)


def _closed(raw: Any, where: str, schema: dict[str, str]) -> Params:
    try:
        return Params(raw or {}, where, schema)
    except WsError as exc:
        exc.close = CLOSE_POLICY
        raise


def _negotiate(params: Params) -> int:
    low = params.get("minProtocol")
    high = params.get("maxProtocol")
    if low is None or high is None:
        raise _fail("invalid connect params: must have minProtocol and maxProtocol")
    chosen = [v for v in PROTOCOL_VERSIONS if int(low) <= v <= int(high)]
    if not chosen:
        raise _fail(
            "protocol mismatch",
            close=CLOSE_PROTOCOL,
            code="PROTOCOL_MISMATCH",
            clientMinProtocol=low,
            clientMaxProtocol=high,
            expectedProtocol=PROTOCOL_VERSIONS[-1],
            supportedProtocols=list(PROTOCOL_VERSIONS),
        )
    return max(chosen)


def _authenticate(runtime: Gateway, client_ip: str, auth: Params) -> str:
    """Check the shared secret; return what a device signature covers as the token."""
    guard = runtime.guard
    noun = "password" if guard.mode == "password" else "token"
    presented = auth.get("password") if guard.mode == "password" else auth.get("token")
    try:
        guard.verify(client_ip, presented)
    except RateLimited as exc:
        raise _fail(
            "unauthorized: too many failed authentication attempts (retry later)",
            code="AUTH_RATE_LIMITED",
            retryAfterMs=(exc.retry_after or 1) * 1000,
        ) from None
    except Unauthorized:
        what = "missing" if presented is None else "mismatch"
        # details.code is what OpenClaw's clients branch on to say which secret is wrong.
        raise _fail(
            f"unauthorized: gateway {noun} {what}",
            code=f"AUTH_{noun.upper()}_{what.upper()}",
            authReason=f"{noun}_{what}",
        ) from None
    return str(auth.get("token") or auth.get("deviceToken") or auth.get("bootstrapToken") or "")


def _b64url(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def signature_payloads(
    *,
    device_id: str,
    client_id: str,
    client_mode: str,
    role: str,
    scopes: list[str],
    signed_at: int,
    token: str,
    nonce: str,
    platform: str,
    device_family: str,
) -> tuple[str, str]:
    """The v3 and v2 strings a device signs (v3 appends platform and device family)."""
    base = [device_id, client_id, client_mode, role, ",".join(scopes), str(signed_at), token, nonce]
    v2 = "|".join(["v2", *base])
    v3 = "|".join(["v3", *base, platform.lower(), device_family.lower()])
    return v3, v2


def _verify_device(
    device: Params,
    challenge: Challenge,
    client: Params,
    role: str,
    scopes: list[str],
    token: str,
) -> str:
    device_id = str(device.required("id"))
    try:
        raw_key = _b64url(str(device.required("publicKey")))
        key = Ed25519PublicKey.from_public_bytes(raw_key)
        signature = _b64url(str(device.required("signature")))
    except (ValueError, binascii.Error):
        raise _fail("device public key invalid") from None
    if hashlib.sha256(raw_key).hexdigest() != device_id.lower():
        raise _fail("device identity mismatch")
    signed_at = int(device.required("signedAt"))
    if abs(time.time() * 1000 - signed_at) > SIGNATURE_MAX_AGE_MS:
        raise _fail("device signature expired")
    if device.get("nonce") != challenge.nonce:
        raise _fail("device nonce mismatch")
    for payload in signature_payloads(
        device_id=device_id,
        client_id=str(client.get("id", "")),
        client_mode=str(client.get("mode", "")),
        role=role,
        scopes=scopes,
        signed_at=signed_at,
        token=token,
        nonce=challenge.nonce,
        platform=str(client.get("platform", "")),
        device_family=str(client.get("deviceFamily", "")),
    ):
        try:
            key.verify(signature, payload.encode("utf-8"))
            return device_id.lower()
        except InvalidSignature:
            continue
    raise _fail("device signature invalid")


def connect(runtime: Gateway, client_ip: str, challenge: Challenge, request: Request) -> Hello:
    """Validate a ``connect`` request in SPEC order; raise ``WsError`` (with a close code)."""
    if request.method != "connect":
        raise _fail("invalid handshake: first request must be connect")
    params = _closed(request.params, "connect", CONNECT_PARAMS)
    client = _closed(params.get("client"), "connect.client", CLIENT_PARAMS)
    auth = _closed(params.get("auth"), "connect.auth", AUTH_PARAMS)
    raw_device = params.get("device")
    device = _closed(raw_device, "connect.device", DEVICE_PARAMS) if raw_device else None
    protocol = _negotiate(params)
    if runtime.draining:
        raise WsError(UNAVAILABLE, "gateway is shutting down", close=CLOSE_RESTART)
    role = str(params.get("role", "operator"))
    if role != "operator":
        raise _fail(f"invalid role: {role}")
    raw_scopes = params.get("scopes")
    if raw_scopes is not None and not all(isinstance(s, str) for s in raw_scopes):
        raise _fail("invalid connect params: scopes must be strings")
    scopes = list(DEFAULT_SCOPES) if raw_scopes is None else list(raw_scopes)
    token = _authenticate(runtime, client_ip, auth)
    device_id = _verify_device(device, challenge, client, role, scopes, token) if device else None
    return Hello(protocol, role, tuple(scopes), str(client.get("id", "")), device_id)


def hello_ok(runtime: Gateway, hello: Hello, conn_id: str, methods: list[str]) -> dict[str, Any]:
    settings = runtime.settings
    ws = settings.gateway.ws
    default_agent = settings.default_agent_id
    return {
        "type": "hello-ok",
        "protocol": hello.protocol,
        "server": {"version": __version__, "connId": conn_id},
        "features": {"methods": methods, "events": list(EVENTS)},
        "snapshot": {
            "presence": [],
            "health": {},
            "stateVersion": {"presence": 0, "health": 0},
            "uptimeMs": int((time.time() - runtime.started_at) * 1000),
            "sessionDefaults": {
                "defaultAgentId": default_agent,
                "mainKey": "main",
                "mainSessionKey": f"agent:{default_agent}:main",
            },
            "authMode": runtime.guard.mode,
        },
        "auth": {"role": hello.role, "scopes": list(hello.scopes)},
        "policy": {
            "maxPayload": ws.max_payload,
            "maxBufferedBytes": ws.max_buffered_bytes,
            "tickIntervalMs": ws.tick_interval_ms,
        },
    }
