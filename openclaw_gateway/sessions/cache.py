"""A per-process copy of recently used transcripts, so a turn fetches only what it has not seen.

A copy is a transcript exactly as it was stored at one moment, parsed into the messages a turn
needs: its transcript id (a random id the stored transcript gets when it is created and loses
when it is deleted), its messages, and the stored text of its last entry. The store checks a copy against the stored transcript in the same
atomic step that takes the lease, and sends only the entries after it; any doubt (another id, a
shorter list, another last entry) means a full load. The copies are bounded by the size of their
stored text and the least recently used go first.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

from ..agent.types import Message

# Stored JSON kept per process as parsed messages: measured, those take up to about twice as
# much memory (less for long texts), so about 8 MB per worker at most.
DEFAULT_CACHE_SIZE = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class TranscriptCopy:
    transcript_id: str
    messages: tuple[Message, ...]  # one per stored entry
    last_text: str  # the stored JSON of the last entry, as the check compares it
    size: int  # characters of stored JSON, what the bound counts


class TranscriptCache:
    """Copies by session key, at most ``max_size`` characters of stored JSON in all."""

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self._copies: OrderedDict[str, TranscriptCopy] = OrderedDict()
        self._size = 0
        # Greenlets only switch on I/O, but the CLI and tests may share a store across threads.
        self._lock = threading.Lock()

    def get(self, session_key: str) -> TranscriptCopy | None:
        with self._lock:
            copy = self._copies.get(session_key)
            if copy is not None:
                self._copies.move_to_end(session_key)
            return copy

    def put(self, session_key: str, copy: TranscriptCopy) -> None:
        with self._lock:
            self._remove(session_key)
            if copy.size > self.max_size:
                return
            self._copies[session_key] = copy
            self._size += copy.size
            while self._size > self.max_size:
                _, oldest = self._copies.popitem(last=False)
                self._size -= oldest.size

    def discard(self, session_key: str) -> None:
        with self._lock:
            self._remove(session_key)

    def _remove(self, session_key: str) -> None:
        copy = self._copies.pop(session_key, None)
        if copy is not None:
            self._size -= copy.size

    def __len__(self) -> int:
        return len(self._copies)
