"""The run's figures: what the suite tried, what it injected, what came back, what was lost.

One ``Figures`` object lives in ``config.stash`` for the whole run; the terminal summary prints it.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.reliability.wire import Answer

# Statuses a client may get from the gateway app, with the OpenAI envelope on the JSON ones.
APP_STATUSES = {200, 400, 401, 404, 405, 409, 413, 429}
# Statuses gevent's pywsgi answers itself, before the app sees the request (empty body,
# ``Connection: close``): 400 for a malformed request line, header block, Content-Length or
# chunked body; 414 for a request line of 8192 bytes or more. It has no header-size status
# (no 431): a header line over 64 KiB or more than 100 header lines is a 400.
SERVER_LAYER_STATUSES = {400, 414}


def status_class(answer: Answer) -> str:
    layer = "app" if answer.from_app else "server-layer"
    return f"{layer} {answer.status}"


@dataclass
class Figures:
    secrets: tuple[str, ...] = ()
    phase: str = ""  # the running test module (malformed_input, upstream_faults, ...)
    inputs_tried: Counter[str] = field(default_factory=Counter)
    faults_injected: Counter[str] = field(default_factory=Counter)
    answers: Counter[str] = field(default_factory=Counter)
    ws_answers: Counter[str] = field(default_factory=Counter)  # WS res codes and close codes
    errors: Counter[str] = field(default_factory=Counter)  # client-side exceptions by class
    server_errors_by_phase: Counter[str] = field(default_factory=Counter)
    secret_leaks: list[str] = field(default_factory=list)
    turns_made: int = 0
    turns_lost: int = 0
    measurements: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add_secrets(self, *secrets: str) -> None:
        self.secrets = tuple(dict.fromkeys(self.secrets + secrets))

    def observe(self, answer: Answer) -> None:
        """Count an answer and check its headers and body for any secret of the run."""
        leaked = [
            s
            for s in self.secrets
            if s.encode() in answer.body or any(s in v for v in answer.headers.values())
        ]
        with self._lock:
            self.answers[status_class(answer)] += 1
            if answer.status >= 500:
                self.server_errors_by_phase[self.phase] += 1
            if leaked:
                self.secret_leaks.append(f"{answer.status}: {answer.body[:200]!r}")

    def observe_ws(self, outcome: str, data: str | bytes = "") -> None:
        """Count a WS outcome (``res ok``, ``res INVALID_REQUEST``, ``close 1008``) and check
        the frame it came in for any secret of the run."""
        raw = data.encode("utf-8", "replace") if isinstance(data, str) else data
        leaked = [s for s in self.secrets if s.encode() in raw]
        with self._lock:
            self.ws_answers[outcome] += 1
            if leaked:
                self.secret_leaks.append(f"ws {outcome}: {raw[:200]!r}")

    def turn_made(self) -> None:
        with self._lock:
            self.turns_made += 1

    def tried(self, area: str, n: int = 1) -> None:
        with self._lock:
            self.inputs_tried[area] += n

    def injected(self, fault: str, n: int = 1) -> None:
        with self._lock:
            self.faults_injected[fault] += n

    def error(self, kind: str, n: int = 1) -> None:
        with self._lock:
            self.errors[kind] += n

    def measured(self, line: str) -> None:
        with self._lock:
            self.measurements.append(line)

    @property
    def requests_served(self) -> int:
        return sum(self.answers.values())

    def lines(self) -> list[str]:
        def counts(counter: Counter[str]) -> str:
            return ", ".join(f"{k}={v}" for k, v in sorted(counter.items())) or "none"

        return [
            f"inputs tried: {sum(self.inputs_tried.values())} ({counts(self.inputs_tried)})",
            f"faults injected: {sum(self.faults_injected.values())} ({counts(self.faults_injected)})",
            f"requests served: {self.requests_served} ({counts(self.answers)})",
            f"ws answers: {sum(self.ws_answers.values())} ({counts(self.ws_answers)})",
            f"5xx answers: {sum(self.server_errors_by_phase.values())} "
            f"({counts(self.server_errors_by_phase)}; injected upstream faults expect 502/504)",
            f"5xx on malformed input: {self.server_errors_by_phase['malformed_input']}",
            f"client-side errors by class: {counts(self.errors)}",
            f"secrets seen in answers: {len(self.secret_leaks)}",
            f"stateful turns made: {self.turns_made}, turns lost: {self.turns_lost}",
            *self.measurements,
        ]
