"""A graceful stop (SIGTERM) tells every WebSocket client before closing it with 1012."""

from __future__ import annotations

import signal

from tests.conftest import base_config
from tests.wsclient import WsClient, connected, ws_url


def test_sigterm_sends_shutdown_then_closes_1012(upstream, start_gateway):
    gw = start_gateway(base_config(upstream, drainSeconds=5))
    url = ws_url(gw.url)
    ws = connected(url)
    waiting = WsClient(url)  # opened, still in its handshake
    gw.signal(signal.SIGTERM)
    assert ws.event("shutdown")["payload"] == {"reason": "gateway shutting down"}
    assert ws.close_code()[0] == 1012
    assert waiting.close_code()[0] == 1012
    assert gw.proc is not None
    assert gw.proc.wait(timeout=15) == 0
    ws.close()
    waiting.close()
