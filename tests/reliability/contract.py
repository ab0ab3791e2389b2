"""What every answer must look like (SPEC 1, 3): a documented status in its documented shape."""

from __future__ import annotations

import json

from openclaw_gateway.http.errors import CLIENT_CLOSED_REQUEST
from tests.reliability.figures import APP_STATUSES, SERVER_LAYER_STATUSES
from tests.reliability.wire import Answer

ENVELOPE_KEYS = {"message", "type", "param", "code"}
JSON_ERROR_STATUSES = {400, 401, 409, 413, 429}


def assert_envelope(answer: Answer, status: int | None = None) -> dict[str, object]:
    """Check for the OpenAI error envelope, exactly; return its ``error`` object."""
    if status is not None:
        assert answer.status == status, answer
    assert answer.headers.get("content-type", "").startswith("application/json"), answer
    body = json.loads(answer.body)
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == ENVELOPE_KEYS, error
    assert isinstance(error["message"], str) and error["message"], error
    assert isinstance(error["type"], str) and error["type"], error
    return error  # type: ignore[no-any-return]


def assert_sse_error(answer: Answer) -> dict[str, object]:
    """Check a stream that failed after its headers: an error event, ``[DONE]``, nothing more."""
    assert answer.status == 200, answer
    events = answer.sse_events()
    assert events[-1] == b"[DONE]", events[-3:]
    error = json.loads(events[-2])["error"]
    assert error["type"] == "api_error" and error["message"], error
    return error  # type: ignore[no-any-return]


def assert_documented(answer: Answer, *, half_closed: bool = False) -> None:
    """Check for a documented status in its documented shape; never a 5xx or a traceback.

    ``half_closed``: the client shut its write side after the request. The gateway takes that
    FIN for the client leaving (SPEC 3) and cancels the run; the empty 499 is all it can say.
    """
    body = answer.body
    assert b"Traceback" not in body and b'File "' not in body, body[:500]
    if half_closed and answer.status == CLIENT_CLOSED_REQUEST and answer.from_app:
        assert body == b"", body[:200]
        return
    if not answer.from_app:
        assert answer.status in SERVER_LAYER_STATUSES, answer
        assert body == b"", body[:200]
        return
    assert answer.status in APP_STATUSES, answer
    if answer.method == "HEAD":
        assert body == b"", body[:200]
    elif answer.status in JSON_ERROR_STATUSES:
        assert_envelope(answer)
    elif answer.status == 404:
        assert body == b"Not Found", body[:200]
    elif answer.status == 405:
        assert body == b"Method Not Allowed" and answer.headers.get("allow"), answer
    elif answer.headers.get("content-type", "").startswith("text/event-stream"):
        events = answer.sse_events()
        assert events and events[-1] == b"[DONE]", body[-300:]
        for event in events[:-1]:
            assert "error" not in json.loads(event), event
    else:
        json.loads(body)
