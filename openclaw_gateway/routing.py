"""Which agent runs a request, and in which session: one place for HTTP and WebSocket."""

from __future__ import annotations

import os
from dataclasses import dataclass

from .agent.errors import InvalidModel, InvalidRequest
from .config import AGENT_ID_RE, AgentSettings, Settings

RESERVED_SESSION_PREFIXES = ("subagent:", "cron:", "acp:")
MAX_SESSION_KEY_LENGTH = 512


def random_uuid() -> str:
    """A random (version 4) UUID as text, as ``str(uuid.uuid4())`` gives it, ~5x cheaper."""
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


@dataclass(frozen=True, slots=True)
class Route:
    agent: AgentSettings
    session_key: str
    stateless: bool
    model_override: str | None = None


def _agent_from_model(settings: Settings, model: str | None) -> str:
    if model is None:
        return settings.default_agent_id
    name = model.strip().lower()
    if name in ("", "openclaw", "openclaw/default"):
        return settings.default_agent_id
    for prefix in ("openclaw/", "openclaw:", "agent:"):
        if name.startswith(prefix):
            agent_id = name[len(prefix) :]
            if AGENT_ID_RE.match(agent_id):
                return agent_id
            break
    raise InvalidModel("Invalid `model`. Use `openclaw` or `openclaw/<agentId>`.", param="model")


def resolve_agent(
    settings: Settings, *, agent_id: str | None = None, model: str | None = None
) -> AgentSettings:
    """The agent named by an explicit id (header, WS param), else by the model string."""
    wanted = (
        agent_id.strip().lower()
        if agent_id and agent_id.strip()
        else _agent_from_model(settings, model)
    )
    agent = settings.agent(wanted)
    if agent is None:
        raise InvalidModel(f"Unknown agent '{wanted}'.", param="model")
    return agent


def _model_override(settings: Settings, agent: AgentSettings, ref: str | None) -> str | None:
    if not ref or not ref.strip():
        return None
    ref = ref.strip()
    provider_id, _, model = ref.partition("/")
    provider = settings.providers.get(provider_id)
    allowed = (
        ref in agent.allowed_models
        if agent.allowed_models
        else (provider is not None and model in provider.models)
    )
    if not model or not allowed:
        raise InvalidRequest(
            f"Model '{ref}' is not allowed for agent '{agent.id}'.", param="x-openclaw-model"
        )
    return ref


def _clean(value: str, what: str) -> str:
    value = value.strip()
    # Printable means no control characters (logs, keys on one line); spaces and non-ASCII
    # names are ordinary `user` values that OpenAI clients send.
    if len(value) > MAX_SESSION_KEY_LENGTH or not value.isprintable():
        raise InvalidRequest(
            f"`{what}` must be at most {MAX_SESSION_KEY_LENGTH} printable characters."
        )
    return value


def route(
    settings: Settings,
    *,
    agent_id: str | None = None,
    model: str | None = None,
    session_key: str | None = None,
    conversation_id: str | None = None,
    user: str | None = None,
    task: bool = False,
    model_override: str | None = None,
) -> Route:
    """Resolve agent and session key (SPEC 4). First match wins for the session key:
    explicit key, conversation header, ``user``, else a new stateless key."""
    agent = resolve_agent(settings, agent_id=agent_id, model=model)
    override = _model_override(settings, agent, model_override)
    if task:
        # UI side requests (title and tag generation) never touch the conversation.
        return Route(agent, f"agent:{agent.id}:openai:{random_uuid()}", True, override)
    if session_key and session_key.strip():
        key = _clean(session_key, "x-openclaw-session-key").lower()
        if key.startswith(RESERVED_SESSION_PREFIXES):
            raise InvalidRequest(
                "`x-openclaw-session-key` cannot use reserved internal session namespaces."
            )
        return Route(agent, key, False, override)
    if conversation_id and conversation_id.strip():
        value = _clean(conversation_id, "conversation id")
        return Route(agent, f"agent:{agent.id}:conversation:{value}", False, override)
    if user and user.strip():
        value = _clean(user, "user")
        return Route(agent, f"agent:{agent.id}:openai-user:{value}", False, override)
    return Route(agent, f"agent:{agent.id}:openai:{random_uuid()}", True, override)
