"""The per-process ``Gateway``: config, providers, session store and auth, built once."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from .agent.errors import GatewayError, RunCancelled, Unavailable, UpstreamError
from .agent.prompt import WorkspacePrompts
from .agent.run import run_agent
from .agent.types import (
    AgentRunRequest,
    AgentRunResult,
    CancelToken,
    Emit,
    SessionInfo,
    SessionStore,
)
from .config import Settings
from .metrics import Metrics
from .providers import build_providers
from .providers.transport import new_pool
from .routing import Route, route
from .security.auth import Guard
from .security.client_ip import ClientIpResolver
from .security.limiter import FailureLimiter, MemoryFailureLimiter, RedisFailureLimiter
from .sessions import open_store

log = logging.getLogger("openclaw_gateway")


class Gateway:
    """Owns everything a surface needs; surfaces call ``gateway.run_agent(request, ...)``."""

    def __init__(self, settings: Settings, *, store: SessionStore | None = None) -> None:
        self.settings = settings
        self.pool = new_pool()
        self.providers = build_providers(settings, self.pool)
        self.store = store or open_store(settings.session)
        self.limiter = _failure_limiter(settings)
        self.guard = Guard(settings.gateway.auth, self.limiter)
        self.client_ips = ClientIpResolver(
            settings.gateway.trusted_proxies, settings.gateway.allow_real_ip_fallback
        )
        self.started_at = time.time()
        self.instance_id = uuid.uuid4().hex[:12]
        self.draining = False
        self.active_runs = 0
        self._drain_listeners: list[Callable[[], None]] = []
        self.workspace_prompts = WorkspacePrompts()
        self.metrics = Metrics(settings.metrics_dir)

    def add_drain_listener(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` when the process starts draining (SIGTERM): surfaces say goodbye."""
        self._drain_listeners.append(listener)

    def start_drain(self) -> None:
        """Refuse new runs from now on (readiness 503) and tell every surface."""
        if self.draining:
            return
        self.draining = True
        for listener in list(self._drain_listeners):
            try:
                listener()
            except Exception:
                log.exception("drain listener failed")

    def refuse_if_draining(self) -> None:
        """Raise ``Unavailable`` (503) once draining; a surface may check before it answers."""
        if self.draining:
            self.metrics.count_run("refused")
            raise Unavailable()

    def route(self, **kwargs: Any) -> Route:
        return route(self.settings, **kwargs)

    def run_agent(
        self,
        request: AgentRunRequest,
        *,
        emit: Emit | None = None,
        cancel: CancelToken | None = None,
    ) -> AgentRunResult:
        """Run one agent turn with this process's providers and store."""
        metrics = self.metrics
        self.refuse_if_draining()
        self.active_runs += 1
        try:
            result = run_agent(
                request,
                providers=self.providers,
                store=self.store,
                emit=emit,
                cancel=cancel,
                lock_wait_seconds=self.settings.session.lock_wait_ms / 1000,
                max_turns=self.settings.session.max_turns,
                workspace_prompts=self.workspace_prompts,
            )
        except RunCancelled:
            metrics.count_run("cancelled")
            raise
        except GatewayError as exc:
            metrics.count_run("error")
            if isinstance(exc, UpstreamError):
                metrics.upstream_errors.labels(exc.code or "upstream_error").inc()
            raise
        except BaseException:
            metrics.count_run("error")
            raise
        finally:
            self.active_runs -= 1
        metrics.count_run("ok")
        metrics.count_tokens(result.usage)
        return result

    def list_sessions(self, limit: int = 1000) -> list[SessionInfo]:
        """The stored sessions, most recently updated first."""
        return self.store.list_sessions(limit)

    def history(self, session_key: str, limit: int | None = None) -> list[dict[str, Any]]:
        """The last ``limit`` transcript entries of a session (all when ``None``), oldest first."""
        entries = self.store.load(session_key)
        return entries[-limit:] if limit else entries

    def delete_session(self, session_key: str) -> bool:
        """Forget a session's transcript; False when there was none."""
        return self.store.delete(session_key)

    def ready(self) -> list[str]:
        """Names of failing dependencies (empty when ready)."""
        failing = []
        if self.draining:
            failing.append("draining")
        try:
            self.store.ping()
        except Exception:  # noqa: BLE001 - any store failure means not ready
            failing.append("sessions")
        return failing

    def close(self) -> None:
        self.store.close()
        self.pool.clear()


def _failure_limiter(settings: Settings) -> FailureLimiter:
    """In Redis when sessions are (so a lockout holds on every worker and host), else in memory."""
    rate_limit = settings.gateway.auth.rate_limit
    if settings.session.store == "sqlite":
        return MemoryFailureLimiter(rate_limit)
    from .sessions.redis import open_client

    return RedisFailureLimiter(
        open_client(settings.session.store), rate_limit, settings.session.key_prefix
    )
