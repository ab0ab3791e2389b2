"""Model providers: OpenAI-compatible, Anthropic Messages, and the built-in echo."""

from __future__ import annotations

import urllib3

from ..agent.types import Provider
from ..config import Settings
from .echo import EchoProvider
from .openai_compat import OpenAICompatProvider


def build_providers(settings: Settings, pool: urllib3.PoolManager) -> dict[str, Provider]:
    """One provider object per configured entry, all sharing the process's pool."""
    providers: dict[str, Provider] = {}
    for pid, entry in settings.providers.items():
        if entry.api == "echo":
            providers[pid] = EchoProvider()
        elif entry.api == "openai-completions":
            providers[pid] = OpenAICompatProvider(entry, pool)
        else:
            from .anthropic import AnthropicProvider

            providers[pid] = AnthropicProvider(entry, pool)
    return providers
