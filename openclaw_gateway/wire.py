"""JSON from clients, as both surfaces accept it (HTTP bodies and WebSocket frames)."""

from __future__ import annotations

import json
import math
import re
from typing import Any

# Only an escape (\ud800) or CESU-style bytes can smuggle in a lone surrogate, so ordinary
# payloads skip the re-encoding check entirely.
_MAYBE_SURROGATE_BYTES = re.compile(rb"\\u[dD][89a-fA-F]|\xed[\xa0-\xbf]")
_MAYBE_SURROGATE_TEXT = re.compile(r"\\u[dD][89a-fA-F]")


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number.")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"number out of range: {text[:40]}")
    return value


# Built once: ``json.loads`` with hooks builds a decoder (and its C scanner) on every call.
_DECODER = json.JSONDecoder(parse_float=_finite_float, parse_constant=_refuse_constant)


def _loads(data: bytes | str) -> Any:
    """``json.loads(data, parse_float=..., parse_constant=...)``, with the decoder built once."""
    if isinstance(data, (bytes, bytearray)):
        data = data.decode(json.detect_encoding(data), "surrogatepass")
    elif data.startswith("\ufeff"):
        raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", data, 0)
    return _DECODER.decode(data)


def decode_json(data: bytes | str) -> Any:
    """Parse client JSON; raise ``ValueError`` with a reason fit to show the client.

    Beyond ``json.loads``: ``NaN``, ``Infinity`` and numbers that overflow to infinity are
    refused (RFC 8259 has none of them, and a NaN or infinite timer corrupts gevent's timer heap:
    the worker's hub spins forever), deep nesting is a ``ValueError`` (not a ``RecursionError``), and a lone
    surrogate, which parses but that no UTF-8 encoder can write again (the upstream body, SSE
    frames, the transcript), is refused here rather than failing mid-run.
    """
    try:
        value = _loads(data)
    except RecursionError:
        raise ValueError("nested too deeply.") from None
    maybe = (
        _MAYBE_SURROGATE_BYTES.search(data)
        if isinstance(data, bytes)
        else _MAYBE_SURROGATE_TEXT.search(data)
    )
    if maybe:
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("a string contains a lone surrogate.") from None
    return value
