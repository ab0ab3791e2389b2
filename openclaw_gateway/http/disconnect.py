"""Notice a client that went away while its run is still going, without waiting for a write."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ..server import WATCH_KEY, ClientWatch

__all__ = ["ClientWatch", "watch_disconnect"]


def watch_disconnect(
    environ: Mapping[str, Any], on_disconnect: Callable[[], None]
) -> ClientWatch | None:
    """Call ``on_disconnect`` once the client closes its side; stop the result when done.

    The watch is the connection's (see ``server.ClientWatch``); None outside the gateway's
    servers (Flask's test client), where nobody can leave mid-run.
    """
    watch: ClientWatch | None = environ.get(WATCH_KEY)
    if watch is not None:
        watch.start(on_disconnect)
    return watch
