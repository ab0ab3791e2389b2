"""The built-in ``echo`` provider: answers ``echo: <current user text>`` when no model is configured.

It is a real provider for first runs and demos: it streams its reply in a few chunks and reports
usage, so auth, sessions, streaming and WebSocket runs behave exactly as with a real model.
"""

from __future__ import annotations

from collections.abc import Iterator

from ..agent.types import (
    CancelToken,
    Finish,
    ProviderCall,
    ProviderEvent,
    TextDelta,
    Usage,
    UsageReport,
)


def _words(text: str) -> int:
    return len(text.split())


class EchoProvider:
    """Reply with the current user text, split into up to three chunks."""

    def stream(self, call: ProviderCall, cancel: CancelToken) -> Iterator[ProviderEvent]:
        current = next((m for m in reversed(call.messages) if m.role in ("user", "tool")), None)
        reply = f"echo: {current.text if current else ''}"
        step = max(1, -(-len(reply) // 3))
        for start in range(0, len(reply), step):
            if cancel.is_set():
                return
            yield TextDelta(reply[start : start + step])
        prompt = _words(call.system) + sum(_words(m.text) for m in call.messages)
        yield UsageReport(Usage(prompt_tokens=prompt, completion_tokens=_words(reply)))
        yield Finish("stop")
