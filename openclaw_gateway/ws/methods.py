"""The methods a connected client may call (SPEC 7): parse, route, ``run_agent``, shape.

Each method declares its scope and reads a closed params object. Runs go through
``gateway.route`` and ``gateway.run_agent`` exactly like HTTP turns, so a WebSocket turn and an
HTTP turn with the same session key share one transcript.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gevent

from .. import __version__
from ..agent.errors import GatewayError, RunCancelled
from ..agent.types import AgentEvent, AgentRunRequest, Image, Message
from ..routing import Route
from ..runtime import Gateway
from .connection import Connection, now_ms
from .protocol import (
    AGENT_TIMEOUT,
    FORBIDDEN,
    UNAVAILABLE,
    Params,
    Request,
    WsError,
    from_gateway_error,
    invalid,
)
from .runs import Run, RunRegistry

log = logging.getLogger("openclaw_gateway.ws")

READ = "operator.read"
WRITE = "operator.write"
ADMIN = "operator.admin"
NO_REPLY = object()  # the method answers by itself (later, or twice)
_AGENT_KEY = re.compile(r"^agent:([a-z0-9][a-z0-9_-]{0,63}):")


@dataclass(frozen=True)
class Context:
    runtime: Gateway
    runs: RunRegistry
    connection_count: Callable[[], int]


Method = Callable[[Context, Connection, Request], Any]


def has_scope(scopes: frozenset[str], needed: str) -> bool:
    if ADMIN in scopes or needed in scopes:
        return True
    # Writing implies reading, as in OpenClaw.
    return needed == READ and WRITE in scopes


# -- read methods ---------------------------------------------------------------------------


def health(ctx: Context, conn: Connection, req: Request) -> Any:
    Params(req.params, "health", {"probe": "boolean"})
    started = time.monotonic()
    failing = ctx.runtime.ready()
    return {
        "ok": not failing,
        "status": "live",
        "ready": not failing,
        "failing": failing,
        "ts": now_ms(),
        "durationMs": int((time.monotonic() - started) * 1000),
    }


def status(ctx: Context, conn: Connection, req: Request) -> Any:
    Params(req.params, "status", {})
    runtime = ctx.runtime
    settings = runtime.settings
    return {
        "version": __version__,
        "instance": runtime.instance_id,
        "uptimeMs": int((time.time() - runtime.started_at) * 1000),
        "draining": runtime.draining,
        "activeRuns": runtime.active_runs,
        "connections": ctx.connection_count(),
        "authMode": runtime.guard.mode,
        "defaultAgentId": settings.default_agent_id,
        "agents": [
            {"id": a.id, "name": a.name or a.id, "model": a.model.primary} for a in settings.agents
        ],
    }


def models_list(ctx: Context, conn: Connection, req: Request) -> Any:
    Params(req.params, "models.list", {})
    settings = ctx.runtime.settings
    # The built-in echo provider is listed only when an agent uses it: OpenClaw lists the catalog.
    used = {ref.split("/", 1)[0] for agent in settings.agents for ref in agent.model.chain}
    models = []
    for provider in settings.providers.values():
        if provider.api == "echo" and provider.id not in used:
            continue
        for model in provider.models:
            meta = provider.model_meta.get(model, {})
            models.append({"id": model, "name": model, "provider": provider.id, **meta})
    return {"models": models}


def sessions_list(ctx: Context, conn: Connection, req: Request) -> Any:
    params = Params(
        req.params,
        "sessions.list",
        {
            "limit": "integer",
            "agentId": "string",
            "search": "string",
            "activeMinutes": "integer",
            "includeGlobal": "boolean",
            "includeUnknown": "boolean",
        },
    )
    limit = params.integer("limit", 1000, 1, 10_000) or 1000
    agent_id = str(params.get("agentId", "")).lower()
    search = str(params.get("search", "")).lower()
    active = params.integer("activeMinutes", None, 1, 10_000_000)
    since = now_ms() - active * 60_000 if active else 0
    sessions = [
        {
            "key": s.key,
            "agentId": s.agent_id,
            "updatedAt": s.updated_at,
            "messageCount": s.message_count,
        }
        for s in ctx.runtime.list_sessions(limit)
        if (not agent_id or s.agent_id == agent_id)
        and (not search or search in s.key)
        and s.updated_at >= since
    ]
    # `ts` and `count` lead the payload as in OpenClaw; clients show the count without counting.
    return {"ts": now_ms(), "count": len(sessions), "sessions": sessions}


def _history_message(entry: dict[str, Any]) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    if entry.get("text"):
        content.append({"type": "text", "text": entry["text"]})
    for call in entry.get("tool_calls", ()):
        content.append(
            {
                "type": "toolCall",
                "id": call["id"],
                "name": call["name"],
                "arguments": call["arguments"],
            }
        )
    for image in entry.get("images", ()):
        if image.get("data"):
            content.append({"type": "image", "mimeType": image["mime"], "data": image["data"]})
    message: dict[str, Any] = {
        "role": entry["role"],
        "content": content,
        "timestamp": entry.get("timestamp"),
    }
    if entry.get("tool_call_id"):
        message["toolCallId"] = entry["tool_call_id"]
    return message


def chat_history(ctx: Context, conn: Connection, req: Request) -> Any:
    params = Params(req.params, "chat.history", {"sessionKey": "string", "limit": "integer"})
    route = session_route(ctx.runtime, None, params.required("sessionKey"))
    limit = params.integer("limit", 200, 1, 1000)
    entries = ctx.runtime.history(route.session_key, limit)
    return {"sessionKey": route.session_key, "messages": [_history_message(e) for e in entries]}


# -- runs -----------------------------------------------------------------------------------


def session_route(runtime: Gateway, agent_id: str | None, session_key: str | None) -> Route:
    """Routing as HTTP does it, with OpenClaw's WebSocket defaults: no key (or ``main``) is the
    agent's main session, and an ``agent:<id>:...`` key picks its agent."""
    key = (session_key or "").strip() or "main"
    if not agent_id:
        match = _AGENT_KEY.match(key.lower())
        if match and runtime.settings.agent(match.group(1)) is not None:
            agent_id = match.group(1)
    route = runtime.route(agent_id=agent_id, session_key=key)
    if route.session_key == "main":
        route = dataclasses.replace(route, session_key=f"agent:{route.agent.id}:main")
    return route


def _images(attachments: list[Any] | None) -> tuple[Image, ...]:
    images = []
    for item in attachments or ():
        if not isinstance(item, dict):
            raise invalid("attachments: expected objects")
        mime = str(item.get("mimeType") or "")
        content = item.get("content")
        if mime.startswith("image/") and isinstance(content, str) and content:
            images.append(Image(mime=mime, data=content))
    return tuple(images)


def _model_override(params: Params) -> str | None:
    provider, model = params.get("provider"), params.get("model")
    if provider and model:
        return f"{provider}/{model}"
    return model or None


class _RunEvents:
    """Turns ``run_agent`` events into ``agent`` or ``chat`` events for the run's owner."""

    def __init__(self, run: Run, chat: bool) -> None:
        self.run = run
        self.chat = chat
        self.text: list[str] = []
        self.seq = 0

    def _agent_event(self, stream: str, data: dict[str, Any]) -> None:
        self.seq += 1
        payload = {
            "runId": self.run.run_id,
            "seq": self.seq,
            "stream": stream,
            "ts": now_ms(),
            "sessionKey": self.run.session_key,
            "agentId": self.run.agent_id,
            "data": data,
        }
        self.run.owner.event("agent", payload)

    def chat_event(self, state: str, **fields: Any) -> dict[str, Any]:
        self.seq += 1
        payload = {
            "runId": self.run.run_id,
            "sessionKey": self.run.session_key,
            "agentId": self.run.agent_id,
            "seq": self.seq,
            "state": state,
            **fields,
        }
        return payload

    def message(self) -> dict[str, Any]:
        return {
            "role": "assistant",
            "content": [{"type": "text", "text": "".join(self.text)}],
            "timestamp": now_ms(),
        }

    def __call__(self, event: AgentEvent) -> None:
        if event.stream == "assistant":
            self.text.append(event.data["delta"])
            if self.chat:
                payload = self.chat_event(
                    "delta", message=self.message(), deltaText=event.data["delta"]
                )
                self.run.owner.event("chat", payload)
            else:
                self._agent_event(
                    "assistant", {"text": "".join(self.text), "delta": event.data["delta"]}
                )
            return
        if self.chat:
            return
        if event.stream == "lifecycle" and event.data.get("phase") == "aborted":
            # OpenClaw's clients know start/end/error: an abort ends the run, marked as such.
            self._agent_event("lifecycle", {**event.data, "phase": "end", "aborted": True})
        elif event.stream in ("tool_call", "tool_result"):
            self._agent_event("tool", event.data)
        else:
            self._agent_event(event.stream, event.data)


def _execute(ctx: Context, run: Run, request: AgentRunRequest, timeout: float | None) -> None:
    """Run the agent in this greenlet and record how it ended; the caller shapes the answer."""
    events = _RunEvents(run, chat=run.method == "chat.send")
    timer = None
    timed_out = []
    if timeout:

        def expire() -> None:
            timed_out.append(True)
            run.cancel.set()

        timer = gevent.spawn_later(timeout, expire)
    try:
        result = ctx.runtime.run_agent(request, emit=events, cancel=run.cancel)
        run.text = result.text
        run.stop_reason = _STOP_REASONS.get(result.finish_reason, result.finish_reason)
        run.finish("ok", now_ms())
    except RunCancelled:
        if timed_out:
            run.finish("timeout", now_ms(), "agent timeout")
        else:
            run.finish("aborted", now_ms(), "aborted")
    except GatewayError as exc:
        run.finish("error", now_ms(), exc.message)
    except Exception:
        log.exception("run %s failed", run.run_id)
        run.finish("error", now_ms(), "internal error")
    finally:
        if timer is not None:
            timer.kill(block=False)
    if run.method == "chat.send":
        _finish_chat(run, events)


# OpenAI finish reasons as OpenClaw's chat events name them (`stopReason`).
_STOP_REASONS = {"tool_calls": "toolUse"}


def _finish_chat(run: Run, events: _RunEvents) -> None:
    if run.status == "ok":
        payload = events.chat_event("final", stopReason=run.stop_reason, message=events.message())
    elif run.status == "aborted":
        # As OpenClaw: stopped over RPC ("rpc"), with the text streamed before the abort so a
        # client can keep what it showed.
        extra = {"message": events.message()} if events.text else {}
        payload = events.chat_event("aborted", stopReason="rpc", **extra)
    else:
        payload = events.chat_event("error", errorMessage=run.error or "error")
    for conn in {run.owner, *run.watchers}:
        conn.event("chat", payload)


def _agent_final(run: Run) -> tuple[dict[str, Any], WsError | None]:
    if run.status == "ok":
        payload = {
            "runId": run.run_id,
            "status": "ok",
            "summary": "completed",
            "result": {"payloads": [{"text": run.text}]},
        }
        return payload, None
    code = AGENT_TIMEOUT if run.status == "timeout" else UNAVAILABLE
    message = run.error or run.status
    payload = {"runId": run.run_id, "status": "error", "summary": message}
    return payload, WsError(code, message, details={"runId": run.run_id, "status": run.status})


def _answer_agent(conn: Connection, request_id: str, run: Run) -> None:
    payload, error = _agent_final(run)
    if error is None:
        conn.respond(request_id, payload)
    else:
        conn.fail(request_id, error, payload)


AGENT_PARAMS = {
    "message": "string",
    "idempotencyKey": "string",
    "agentId": "string",
    "sessionKey": "string",
    "sessionId": "string",
    "extraSystemPrompt": "string",
    "timeout": "number",
    "provider": "string",
    "model": "string",
    "attachments": "array",
    "thinking": "string",
    "deliver": "boolean",
    "channel": "string",
    "label": "string",
    "lane": "string",
    "to": "string",
    "replyTo": "string",
    "bestEffortDeliver": "boolean",
}


def _new_run(
    ctx: Context,
    conn: Connection,
    method: str,
    key: str,
    route: Route,
    message: str,
    images: tuple[Image, ...],
    extra_system_prompt: str = "",
) -> tuple[Run, AgentRunRequest]:
    if ctx.runtime.draining:
        raise WsError(UNAVAILABLE, "gateway is shutting down")
    run = Run(key, method, route.session_key, conn, now_ms(), key, agent_id=route.agent.id)
    request = AgentRunRequest(
        agent=route.agent,
        session_key=route.session_key,
        stateless=route.stateless,
        messages=[Message("user", message, images=images)],
        run_id=run.run_id,
        extra_system_prompt=extra_system_prompt,
        model_override=route.model_override,
    )
    ctx.runs.add(run)
    return run, request


def agent(ctx: Context, conn: Connection, req: Request) -> Any:
    params = Params(req.params, "agent", AGENT_PARAMS)
    message = str(params.required("message"))
    key = str(params.required("idempotencyKey"))
    existing = ctx.runs.by_key("agent", key)
    if existing is not None:
        # A retry: the same run, never a second one.
        conn.respond(req.id, {"runId": existing.run_id, "status": "accepted", "duplicate": True})
        conn.spawn(_answer_when_done, conn, req.id, existing)
        return NO_REPLY
    route = session_route(ctx.runtime, params.get("agentId"), params.get("sessionKey"))
    if _model_override(params):
        route = ctx.runtime.route(
            agent_id=route.agent.id,
            session_key=route.session_key,
            model_override=_model_override(params),
        )
    timeout = params.number("timeout", 0, 0, 24 * 3600) or None
    run, request = _new_run(
        ctx,
        conn,
        "agent",
        key,
        route,
        message,
        _images(params.get("attachments")),
        str(params.get("extraSystemPrompt", "")),
    )
    accepted = {
        "runId": run.run_id,
        "sessionKey": run.session_key,
        "agentId": run.agent_id,
        "status": "accepted",
        "acceptedAt": now_ms(),
    }
    conn.respond(req.id, accepted)

    def go() -> None:
        _execute(ctx, run, request, timeout)
        _answer_agent(conn, req.id, run)

    gevent.spawn(go)
    return NO_REPLY


def _answer_when_done(conn: Connection, request_id: str, run: Run) -> None:
    run.done.wait()
    _answer_agent(conn, request_id, run)


def agent_wait(ctx: Context, conn: Connection, req: Request) -> Any:
    params = Params(req.params, "agent.wait", {"runId": "string", "timeoutMs": "integer"})
    run_id = str(params.required("runId"))
    timeout_ms = params.integer("timeoutMs", 30_000, 0, 24 * 3_600_000) or 0

    def wait() -> None:
        deadline = time.monotonic() + timeout_ms / 1000
        # A run may be started by another request just after this one.
        run = ctx.runs.wait_started(run_id, timeout_ms / 1000)
        if run is not None:
            run.done.wait(max(0.0, deadline - time.monotonic()))
        if run is None or not run.done.is_set():
            conn.respond(req.id, {"runId": run_id, "status": "timeout"})
            return
        payload: dict[str, Any] = {
            "runId": run_id,
            "status": "ok" if run.status == "ok" else "error",
            "startedAt": run.started_at,
            "endedAt": run.ended_at,
        }
        if run.status != "ok":
            payload["error"] = run.error
        conn.respond(req.id, payload)

    conn.spawn(wait)
    return NO_REPLY


def chat_send(ctx: Context, conn: Connection, req: Request) -> Any:
    params = Params(
        req.params,
        "chat.send",
        {
            "sessionKey": "string",
            "message": "string",
            "idempotencyKey": "string",
            "attachments": "array",
            "thinking": "string",
            "deliver": "boolean",
            "timeoutMs": "integer",
        },
    )
    route = session_route(ctx.runtime, None, params.required("sessionKey"))
    message = str(params.required("message"))
    key = str(params.required("idempotencyKey"))
    existing = ctx.runs.by_key("chat.send", key)
    if existing is not None:
        state = "in_flight" if not existing.done.is_set() else existing.status
        return {"runId": existing.run_id, "status": state, "duplicate": True}
    timeout_ms = params.integer("timeoutMs", None, 1, 24 * 3_600_000)
    run, request = _new_run(
        ctx, conn, "chat.send", key, route, message, _images(params.get("attachments"))
    )
    gevent.spawn(_execute, ctx, run, request, timeout_ms / 1000 if timeout_ms else None)
    return {"runId": run.run_id, "status": "started"}


def chat_abort(ctx: Context, conn: Connection, req: Request) -> Any:
    params = Params(req.params, "chat.abort", {"sessionKey": "string", "runId": "string"})
    route = session_route(ctx.runtime, None, params.required("sessionKey"))
    run_id = params.get("runId")
    runs = [r for r in ctx.runs.running(route.session_key) if not run_id or r.run_id == run_id]
    for run in runs:
        if conn is not run.owner:
            run.watchers.add(conn)
        run.cancel.set()
    return {"ok": True, "aborted": bool(runs), "runIds": [r.run_id for r in runs]}


METHODS: dict[str, tuple[str, Method]] = {
    "health": (READ, health),
    "status": (READ, status),
    "models.list": (READ, models_list),
    "sessions.list": (READ, sessions_list),
    "chat.history": (READ, chat_history),
    "agent": (WRITE, agent),
    "agent.wait": (WRITE, agent_wait),
    "chat.send": (WRITE, chat_send),
    "chat.abort": (WRITE, chat_abort),
}


def dispatch(ctx: Context, conn: Connection, req: Request) -> None:
    """Answer one request: unknown method, missing scope, then the method itself."""
    entry = METHODS.get(req.method)
    if entry is None:
        conn.fail(req.id, invalid(f"unknown method: {req.method}"))
        return
    scope, method = entry
    if not has_scope(conn.scopes, scope):
        conn.fail(req.id, WsError(FORBIDDEN, f"missing scope: {scope}"))
        return
    try:
        payload = method(ctx, conn, req)
    except WsError as exc:
        conn.fail(req.id, exc)
        return
    except GatewayError as exc:
        conn.fail(req.id, from_gateway_error(exc))
        return
    except Exception:
        log.exception("ws method %s failed", req.method)
        conn.fail(req.id, WsError(UNAVAILABLE, "internal error"))
        return
    if payload is not NO_REPLY:
        conn.respond(req.id, payload)
