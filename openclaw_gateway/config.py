"""Load, substitute and validate the gateway's configuration into typed, frozen settings.

The file is JSON5 in OpenClaw's ``openclaw.json`` shape. Path: ``--config``, else
``OPENCLAW_CONFIG_PATH``, else ``$OPENCLAW_STATE_DIR/openclaw.json`` (state dir default
``~/.openclaw``). No file at all is a valid start. ``${VAR}`` in any string is replaced from the
environment (``$${VAR}`` keeps the literal text). Keys this gateway does not use are collected in
``Settings.ignored_keys`` (the caller prints them on one line); a wrong value raises ``ConfigError``
with one line naming the key path and what was expected.

This is the only module that reads ``os.environ``.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import json5

DEFAULT_PORT = 18789
MiB = 1024 * 1024
ECHO_PROVIDER_ID = "echo"
ECHO_MODEL_REF = "echo/echo"
AGENT_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
PROVIDER_APIS = ("openai-completions", "anthropic-messages", "echo")


class ConfigError(Exception):
    """A configuration problem, worded as one line that names the key path."""


# ---------------------------------------------------------------------------------------------
# Settings


@dataclass(frozen=True)
class ModelRef:
    primary: str
    fallbacks: tuple[str, ...] = ()

    @property
    def chain(self) -> tuple[str, ...]:
        return (self.primary, *self.fallbacks)


@dataclass(frozen=True)
class AgentSettings:
    id: str
    model: ModelRef
    name: str = ""
    default: bool = False
    system_prompt: str = ""
    workspace: str | None = None
    # Models a request may pick with ``x-openclaw-model`` (``provider/model``).
    allowed_models: tuple[str, ...] = ()
    tools_allow: tuple[str, ...] = ()
    tools_deny: tuple[str, ...] = ()
    max_tool_rounds: int = 8


@dataclass(frozen=True)
class ProviderSettings:
    id: str
    api: str
    base_url: str = ""
    api_key: str = field(default="", repr=False)
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    models: tuple[str, ...] = ()
    # Per model id, the catalog fields OpenClaw's models.list shows (name, contextWindow, reasoning).
    model_meta: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    timeout_seconds: float = 120.0
    connect_timeout_seconds: float = 10.0


@dataclass(frozen=True)
class RateLimitSettings:
    max_attempts: int = 10
    window_seconds: float = 60.0
    lockout_seconds: float = 300.0
    exempt_loopback: bool = True


@dataclass(frozen=True)
class AuthSettings:
    mode: str = "none"  # none | token | password
    token: str = field(default="", repr=False)
    password: str = field(default="", repr=False)
    rate_limit: RateLimitSettings = RateLimitSettings()

    @property
    def secret(self) -> str:
        return self.password if self.mode == "password" else self.token


@dataclass(frozen=True)
class ChatCompletionsSettings:
    enabled: bool = False
    max_body_bytes: int = 20 * MiB
    keepalive_seconds: float = 15.0
    images_allow_url: bool = False
    max_image_parts: int = 8
    max_image_bytes: int = 20 * MiB


@dataclass(frozen=True)
class HttpSettings:
    chat_completions: ChatCompletionsSettings = ChatCompletionsSettings()
    session_headers: tuple[str, ...] = ("X-OpenWebUI-Chat-Id", "X-Conversation-Id")
    task_headers: tuple[str, ...] = ("X-OpenWebUI-Task",)
    cors_allowed_origins: tuple[str, ...] = ()


@dataclass(frozen=True)
class WsSettings:
    """The WebSocket surface (``gateway.ws``); defaults are OpenClaw's."""

    handshake_timeout_ms: int = 10_000
    tick_interval_ms: int = 30_000
    # Largest message after auth (before auth: 64 KiB, fixed).
    max_payload: int = 25 * MiB
    # Bytes queued for one socket before it counts as a slow consumer (closed with 1008).
    max_buffered_bytes: int = 50 * MiB


@dataclass(frozen=True)
class GatewaySettings:
    port: int = DEFAULT_PORT
    bind: str = "loopback"
    host: str = "127.0.0.1"
    auth: AuthSettings = AuthSettings()
    trusted_proxies: tuple[str, ...] = ()
    allow_real_ip_fallback: bool = False
    http: HttpSettings = HttpSettings()
    metrics_public: bool = False
    drain_seconds: float = 25.0
    ws: WsSettings = WsSettings()


@dataclass(frozen=True)
class SessionSettings:
    store: str = "sqlite"  # "sqlite" or a redis:// URL
    sqlite_path: str = ""
    lock_wait_ms: int = 30_000
    lock_ttl_ms: int = 30_000
    max_turns: int = 200
    # Redis only: every key this gateway writes starts with it (several gateways, one Redis).
    key_prefix: str = "openclaw:"


@dataclass(frozen=True)
class Settings:
    gateway: GatewaySettings = GatewaySettings()
    providers: Mapping[str, ProviderSettings] = field(default_factory=dict)
    agents: tuple[AgentSettings, ...] = ()
    default_agent_id: str = "main"
    session: SessionSettings = SessionSettings()
    state_dir: str = ""
    config_path: str | None = None
    log_content: bool = False
    # PROMETHEUS_MULTIPROC_DIR (gunicorn.conf.py sets it): metrics summed across workers.
    metrics_dir: str = ""
    ignored_keys: tuple[str, ...] = ()
    # Keys warned about at start-up besides the ignored ones (e.g. auth off on loopback).
    notices: tuple[str, ...] = ()

    def agent(self, agent_id: str) -> AgentSettings | None:
        for agent in self.agents:
            if agent.id == agent_id:
                return agent
        return None

    @property
    def uses_echo_only(self) -> bool:
        return all(p.api == "echo" for p in self.providers.values())


# ---------------------------------------------------------------------------------------------
# Reading


_MISSING: Any = object()
_VAR_RE = re.compile(r"\$?\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def json_type(value: Any) -> str:
    """How a validation message names a JSON value's type (``expected X, received <this>``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


class _Section:
    """One JSON object of the config, read key by key; keys never read are reported as ignored."""

    def __init__(self, raw: Any, path: str, ignored: list[str]) -> None:
        if raw is _MISSING or raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: expected object, received {json_type(raw)}")
        self.raw: dict[str, Any] = raw
        self.path = path
        self._seen: set[str] = set()
        self._ignored = ignored

    def _key(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def get(self, key: str) -> Any:
        self._seen.add(key)
        return self.raw.get(key, _MISSING)

    def has(self, key: str) -> bool:
        return self.raw.get(key) is not None

    def section(self, key: str) -> _Section:
        return _Section(self.get(key), self._key(key), self._ignored)

    def string(self, key: str, default: str = "") -> str:
        value = self.get(key)
        if value is _MISSING or value is None:
            return default
        if not isinstance(value, str):
            raise ConfigError(f"{self._key(key)}: expected string, received {json_type(value)}")
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self.get(key)
        if value is _MISSING or value is None:
            return default
        if not isinstance(value, bool):
            raise ConfigError(f"{self._key(key)}: expected boolean, received {json_type(value)}")
        return value

    def number(self, key: str, default: float, lo: float, hi: float, integer: bool = False) -> Any:
        value = self.get(key)
        if value is _MISSING or value is None:
            return default
        wanted = "integer" if integer else "number"
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or (integer and not float(value).is_integer())
        ):
            raise ConfigError(f"{self._key(key)}: expected {wanted}, received {json_type(value)}")
        if not lo <= value <= hi:
            raise ConfigError(f"{self._key(key)}: expected {wanted} from {lo:g} to {hi:g}")
        return int(value) if integer else float(value)

    def strings(self, key: str, default: tuple[str, ...] = ()) -> tuple[str, ...]:
        value = self.get(key)
        if value is _MISSING or value is None:
            return default
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(
                f"{self._key(key)}: expected array of strings, received {json_type(value)}"
            )
        return tuple(value)

    def choice(self, key: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.string(key, default)
        if value not in choices:
            raise ConfigError(f"{self._key(key)}: expected one of {', '.join(choices)}")
        return value

    def finish(self) -> None:
        """Report the keys of this object that nothing read."""
        for key in self.raw:
            if key not in self._seen:
                self._ignored.append(self._key(key))


def _substitute(value: Any, path: str, env: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        if "${" not in value:
            return value

        def replace(match: re.Match[str]) -> str:
            if match.group(0).startswith("$$"):
                return match.group(0)[1:]
            name = match.group(1)
            if name not in env:
                raise ConfigError(f"{path}: environment variable {name} is not set")
            return env[name]

        return _VAR_RE.sub(replace, value)
    if isinstance(value, dict):
        return {k: _substitute(v, f"{path}.{k}" if path else k, env) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, f"{path}[{i}]", env) for i, v in enumerate(value)]
    return value


def _model_ref(value: Any, path: str) -> ModelRef | None:
    if value is _MISSING or value is None:
        return None
    if isinstance(value, str):
        return ModelRef(value.strip())
    if isinstance(value, dict):
        section = _Section(value, path, [])
        primary = section.string("primary")
        if not primary:
            raise ConfigError(
                f"{path}.primary: expected string, received {json_type(value.get('primary'))}"
            )
        return ModelRef(primary.strip(), tuple(f.strip() for f in section.strings("fallbacks")))
    raise ConfigError(
        f"{path}: expected string or {{primary, fallbacks}}, received {json_type(value)}"
    )


def _bind_host(bind: str, path: str) -> str:
    if bind in ("loopback", "auto"):
        return "127.0.0.1"
    if bind == "lan":
        return "0.0.0.0"
    try:
        return str(ipaddress.ip_address(bind))
    except ValueError:
        raise ConfigError(f"{path}: expected loopback, lan or an IP address") from None


def is_loopback_host(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


# ---------------------------------------------------------------------------------------------
# Sections


def _read_auth(gw: _Section, env: Mapping[str, str], host: str, notices: list[str]) -> AuthSettings:
    auth = gw.section("auth")
    # Read the file's values first (so they never count as ignored keys); the env wins.
    file_token, file_password = auth.string("token"), auth.string("password")
    token = env.get("OPENCLAW_GATEWAY_TOKEN") or file_token
    password = env.get("OPENCLAW_GATEWAY_PASSWORD") or file_password
    mode = auth.string("mode")
    if mode and mode not in ("none", "token", "password"):
        raise ConfigError("gateway.auth.mode: expected one of none, token, password")
    rl = auth.section("rateLimit")
    rate_limit = RateLimitSettings(
        max_attempts=rl.number("maxAttempts", 10, 1, 1_000_000, integer=True),
        window_seconds=rl.number("windowMs", 60_000, 1, 86_400_000) / 1000,
        lockout_seconds=rl.number("lockoutMs", 300_000, 0, 86_400_000) / 1000,
        exempt_loopback=rl.boolean("exemptLoopback", True),
    )
    rl.finish()
    auth.finish()
    if not mode:
        if password:
            mode = "password"
        elif token or not is_loopback_host(host):
            mode = "token"
        else:
            # No file and no secret: a first run on loopback is open, and says so.
            mode = "none"
            notices.append(
                "auth: no token configured; the gateway is open on loopback "
                "(set OPENCLAW_GATEWAY_TOKEN to require one)"
            )
    if mode == "token" and not token:
        raise ConfigError(
            "gateway.auth.token: token mode needs a token (set it or OPENCLAW_GATEWAY_TOKEN)"
        )
    if mode == "password" and not password:
        raise ConfigError(
            "gateway.auth.password: password mode needs a password "
            "(set it or OPENCLAW_GATEWAY_PASSWORD)"
        )
    if mode == "none" and not is_loopback_host(host):
        raise ConfigError(
            "gateway.auth.mode: 'none' is refused on a non-loopback bind; configure a token"
        )
    return AuthSettings(mode=mode, token=token, password=password, rate_limit=rate_limit)


def _env_switch(env: Mapping[str, str], name: str) -> bool | None:
    value = env.get(name, "").strip().lower()
    if not value:
        return None
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}: expected 1/true/yes/on or 0/false/no/off, received {value!r}")


def _read_http(gw: _Section, env: Mapping[str, str]) -> HttpSettings:
    http = gw.section("http")
    endpoints = http.section("endpoints")
    cc = endpoints.section("chatCompletions")
    images = cc.section("images")
    enabled = cc.boolean("enabled", False)
    # PaaS: turn the endpoint on (or off) without a config file.
    switch = _env_switch(env, "OPENCLAW_CHAT_COMPLETIONS")
    chat = ChatCompletionsSettings(
        enabled=enabled if switch is None else switch,
        max_body_bytes=cc.number("maxBodyBytes", 20 * MiB, 1, 1 << 40, integer=True),
        keepalive_seconds=cc.number("keepaliveSeconds", 15.0, 0, 3600),
        images_allow_url=images.boolean("allowUrl", False),
        max_image_parts=images.number("maxParts", 8, 0, 1000, integer=True),
        max_image_bytes=images.number("maxBytes", 20 * MiB, 0, 1 << 40, integer=True),
    )
    for section in (images, cc, endpoints):
        section.finish()
    cors = http.section("cors")
    settings = HttpSettings(
        chat_completions=chat,
        session_headers=http.strings("sessionHeaders", HttpSettings.session_headers),
        task_headers=http.strings("taskHeaders", HttpSettings.task_headers),
        cors_allowed_origins=cors.strings("allowedOrigins"),
    )
    cors.finish()
    http.finish()
    return settings


def _read_ws(gw: _Section) -> WsSettings:
    ws = gw.section("ws")
    settings = WsSettings(
        handshake_timeout_ms=ws.number("handshakeTimeoutMs", 10_000, 100, 600_000, integer=True),
        tick_interval_ms=ws.number("tickIntervalMs", 30_000, 10, 3_600_000, integer=True),
        max_payload=ws.number("maxPayload", 25 * MiB, 64 * 1024, 1 << 31, integer=True),
        max_buffered_bytes=ws.number("maxBufferedBytes", 50 * MiB, 1024, 1 << 34, integer=True),
    )
    ws.finish()
    return settings


def _drain_seconds(gw: _Section, env: Mapping[str, str]) -> float:
    seconds: float = gw.number("drainSeconds", 25.0, 0, 3600)
    # PaaS: fit the drain inside the platform's stop timeout (Heroku: 30 s) without a file.
    raw = env.get("OPENCLAW_DRAIN_SECONDS", "").strip()
    if raw:
        try:
            seconds = float(raw)
        except ValueError:
            seconds = -1
        if not 0 <= seconds <= 3600:
            raise ConfigError(
                f"OPENCLAW_DRAIN_SECONDS: expected seconds from 0 to 3600, received {raw!r}"
            )
    return seconds


def _read_gateway(root: _Section, env: Mapping[str, str], notices: list[str]) -> GatewaySettings:
    gw = root.section("gateway")
    port = gw.number("port", DEFAULT_PORT, 1, 65535, integer=True)
    env_port = env.get("OPENCLAW_GATEWAY_PORT") or env.get("PORT")
    if env_port:
        if not env_port.isdigit() or not 0 < int(env_port) < 65536:
            raise ConfigError(f"PORT: expected a port number, received {env_port!r}")
        port = int(env_port)
    file_bind = gw.string("bind")
    bind = env.get("OPENCLAW_GATEWAY_BIND") or file_bind
    if not bind:
        # A PaaS sets $PORT and routes from outside the container.
        bind = "lan" if env.get("PORT") and not env.get("OPENCLAW_GATEWAY_PORT") else "loopback"
    host = _bind_host(bind, "gateway.bind")
    auth = _read_auth(gw, env, host, notices)
    trusted = gw.strings("trustedProxies")
    for i, proxy in enumerate(trusted):
        try:
            ipaddress.ip_network(proxy, strict=False)
        except ValueError:
            raise ConfigError(
                f"gateway.trustedProxies[{i}]: expected an IP address or CIDR"
            ) from None
    http = _read_http(gw, env)
    metrics = gw.section("metrics")
    settings = GatewaySettings(
        port=port,
        bind=bind,
        host=host,
        auth=auth,
        trusted_proxies=trusted,
        allow_real_ip_fallback=gw.boolean("allowRealIpFallback", False),
        http=http,
        metrics_public=metrics.boolean("public", False),
        drain_seconds=_drain_seconds(gw, env),
        ws=_read_ws(gw),
    )
    metrics.finish()
    gw.get("mode")  # OpenClaw's "local" | "remote": this gateway is always local.
    gw.finish()
    return settings


def _read_providers(root: _Section, env: Mapping[str, str]) -> dict[str, ProviderSettings]:
    models = root.section("models")
    models.get("mode")  # OpenClaw's catalog merge mode: the configured providers are the catalog.
    section = models.section("providers")
    providers: dict[str, ProviderSettings] = {}
    for pid in section.raw:
        path = f"models.providers.{pid}"
        p = section.section(pid)
        api = p.choice("api", "openai-completions", PROVIDER_APIS)
        base_url = p.string("baseUrl")
        if api == "anthropic-messages" and not base_url:
            base_url = "https://api.anthropic.com"
        if api == "openai-completions" and not base_url:
            raise ConfigError(
                f"{path}.baseUrl: expected the provider's URL, e.g. http://127.0.0.1:11434/v1"
            )
        if base_url and not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"{path}.baseUrl: expected an http:// or https:// URL")
        headers = p.get("headers")
        if headers is _MISSING or headers is None:
            headers = {}
        if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
            raise ConfigError(f"{path}.headers: expected object of strings")
        model_ids = []
        model_meta: dict[str, dict[str, Any]] = {}
        raw_models = p.get("models")
        if raw_models is not _MISSING and raw_models is not None:
            if not isinstance(raw_models, list):
                raise ConfigError(
                    f"{path}.models: expected array, received {json_type(raw_models)}"
                )
            for i, m in enumerate(raw_models):
                if isinstance(m, str):
                    model_ids.append(m)
                elif isinstance(m, dict) and isinstance(m.get("id"), str):
                    model_ids.append(m["id"])
                    model_meta[m["id"]] = _model_meta(m)
                else:
                    raise ConfigError(f"{path}.models[{i}]: expected {{id: string, ...}}")
        providers[pid] = ProviderSettings(
            id=pid,
            api=api,
            base_url=base_url.rstrip("/"),
            api_key=p.string("apiKey"),
            headers=dict(headers),
            models=tuple(model_ids),
            model_meta=model_meta,
            timeout_seconds=p.number("timeoutSeconds", 120.0, 0.01, 86_400),
            connect_timeout_seconds=p.number("connectTimeoutSeconds", 10.0, 0.01, 600),
        )
        p.finish()
    section.finish()
    models.finish()
    # PaaS: one provider entirely from the environment when the file names none.
    if not providers and env.get("OPENCLAW_PROVIDER_BASE_URL"):
        providers["default"] = ProviderSettings(
            id="default",
            api=env.get("OPENCLAW_PROVIDER_API", "openai-completions"),
            base_url=env["OPENCLAW_PROVIDER_BASE_URL"].rstrip("/"),
            api_key=env.get("OPENCLAW_PROVIDER_API_KEY", ""),
            models=tuple(filter(None, [env.get("OPENCLAW_PROVIDER_MODEL", "")])),
        )
    providers.setdefault(
        ECHO_PROVIDER_ID, ProviderSettings(id=ECHO_PROVIDER_ID, api="echo", models=("echo",))
    )
    return providers


def _model_meta(entry: Mapping[str, Any]) -> dict[str, Any]:
    """Keep a catalog entry's display fields that have the type OpenClaw gives them."""
    meta: dict[str, Any] = {}
    if isinstance(entry.get("name"), str) and entry["name"]:
        meta["name"] = entry["name"]
    window = entry.get("contextWindow")
    if isinstance(window, int) and not isinstance(window, bool) and window > 0:
        meta["contextWindow"] = window
    if isinstance(entry.get("reasoning"), bool):
        meta["reasoning"] = entry["reasoning"]
    return meta


def _default_model(providers: Mapping[str, ProviderSettings], env: Mapping[str, str]) -> ModelRef:
    if env.get("OPENCLAW_DEFAULT_MODEL"):
        return ModelRef(env["OPENCLAW_DEFAULT_MODEL"])
    for provider in providers.values():
        if provider.api != "echo" and provider.models:
            return ModelRef(f"{provider.id}/{provider.models[0]}")
    return ModelRef(ECHO_MODEL_REF)


def _read_agent(
    raw: Any, path: str, agent_id: str | None, defaults: dict[str, Any], ignored: list[str]
) -> AgentSettings:
    a = _Section(raw, path, ignored)
    agent_id = (agent_id or a.string("id")).strip().lower()
    if not AGENT_ID_RE.match(agent_id):
        raise ConfigError(f"{path}.id: expected an agent id matching [a-z0-9][a-z0-9_-]{{0,63}}")
    model = _model_ref(a.get("model"), f"{path}.model") or defaults["model"]
    tools = a.section("tools")
    settings = AgentSettings(
        id=agent_id,
        name=a.string("name", agent_id),
        default=a.boolean("default", False),
        model=model,
        system_prompt=a.string("systemPrompt", defaults["system_prompt"]),
        workspace=os.path.expanduser(a.string("workspace")) or defaults["workspace"],
        allowed_models=a.strings("models", defaults["allowed_models"]),
        tools_allow=tools.strings("allow", defaults["tools_allow"]),
        tools_deny=tools.strings("deny", defaults["tools_deny"]),
        max_tool_rounds=a.number(
            "maxToolRounds", defaults["max_tool_rounds"], 0, 100, integer=True
        ),
    )
    tools.finish()
    a.finish()
    return settings


def _read_agents(
    root: _Section,
    providers: Mapping[str, ProviderSettings],
    env: Mapping[str, str],
    ignored: list[str],
) -> tuple[tuple[AgentSettings, ...], str]:
    agents = root.section("agents")
    d = agents.section("defaults")
    dtools = d.section("tools")
    defaults = {
        "model": _model_ref(d.get("model"), "agents.defaults.model")
        or _default_model(providers, env),
        "system_prompt": d.string("systemPrompt"),
        "workspace": os.path.expanduser(d.string("workspace")) or None,
        "allowed_models": d.strings("models"),
        "tools_allow": dtools.strings("allow"),
        "tools_deny": dtools.strings("deny"),
        "max_tool_rounds": d.number("maxToolRounds", 8, 0, 100, integer=True),
    }
    dtools.finish()
    d.finish()
    result: list[AgentSettings] = []
    raw_list = agents.get("list")
    if raw_list is not _MISSING and raw_list is not None:
        if not isinstance(raw_list, list):
            raise ConfigError(f"agents.list: expected array, received {json_type(raw_list)}")
        result += [
            _read_agent(a, f"agents.list[{i}]", None, defaults, ignored)
            for i, a in enumerate(raw_list)
        ]
    entries = agents.section("entries")
    for agent_id in entries.raw:
        entries.get(agent_id)
        result.append(
            _read_agent(
                entries.raw[agent_id], f"agents.entries.{agent_id}", agent_id, defaults, ignored
            )
        )
    agents.finish()
    if not result:
        result.append(
            AgentSettings(
                id="main",
                name="main",
                model=defaults["model"],
                system_prompt=defaults["system_prompt"],
                workspace=defaults["workspace"],
                allowed_models=defaults["allowed_models"],
                tools_allow=defaults["tools_allow"],
                tools_deny=defaults["tools_deny"],
                max_tool_rounds=defaults["max_tool_rounds"],
            )
        )
    seen: set[str] = set()
    for agent in result:
        if agent.id in seen:
            raise ConfigError(f"agents: agent id '{agent.id}' is defined twice")
        seen.add(agent.id)
        for ref in agent.model.chain:
            provider_id, _, model = ref.partition("/")
            if not model or provider_id not in providers:
                raise ConfigError(
                    f"agents.{agent.id}.model: '{ref}' names no configured provider "
                    f"(expected <provider>/<model> with models.providers.<provider>)"
                )
    default = next((a.id for a in result if a.default), result[0].id)
    return tuple(result), default


def _read_session(root: _Section, env: Mapping[str, str], state_dir: str) -> SessionSettings:
    s = root.section("session")
    file_store = s.string("store")
    store = env.get("OPENCLAW_SESSION_STORE") or file_store or env.get("REDIS_URL") or "sqlite"
    if store != "sqlite" and not store.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError('session.store: expected "sqlite" or a redis:// URL')
    settings = SessionSettings(
        store=store,
        sqlite_path=s.string("sqlitePath")
        or os.path.join(state_dir, "gateway", "sessions.sqlite3"),
        lock_wait_ms=s.number("lockWaitMs", 30_000, 0, 3_600_000, integer=True),
        lock_ttl_ms=s.number("lockTtlMs", 30_000, 1000, 3_600_000, integer=True),
        max_turns=s.number("maxTurns", 200, 1, 1_000_000, integer=True),
        key_prefix=s.string("keyPrefix", SessionSettings.key_prefix),
    )
    s.finish()
    return settings


# ---------------------------------------------------------------------------------------------
# Entry points


def resolve_config_path(
    path: str | None = None, env: Mapping[str, str] | None = None
) -> tuple[str | None, str]:
    """Return ``(config file path or None when absent, state dir)``."""
    env = os.environ if env is None else env
    state_dir = env.get("OPENCLAW_STATE_DIR") or os.path.join(os.path.expanduser("~"), ".openclaw")
    candidate = path or env.get("OPENCLAW_CONFIG_PATH") or os.path.join(state_dir, "openclaw.json")
    if path or env.get("OPENCLAW_CONFIG_PATH"):
        if not Path(candidate).is_file():
            raise ConfigError(f"config: no file at {candidate}")
        return candidate, state_dir
    return (candidate if Path(candidate).is_file() else None), state_dir


def parse_settings(
    raw: Any, env: Mapping[str, str], state_dir: str, config_path: str | None = None
) -> Settings:
    """Validate an already-parsed config object into ``Settings``."""
    raw = _substitute(raw, "", env)
    ignored: list[str] = []
    notices: list[str] = []
    root = _Section(raw, "", ignored)
    gateway = _read_gateway(root, env, notices)
    providers = _read_providers(root, env)
    agents, default_agent = _read_agents(root, providers, env, ignored)
    session = _read_session(root, env, state_dir)
    log = root.section("logging")
    log_content = log.boolean("content", False)
    log.finish()
    root.finish()
    return Settings(
        gateway=gateway,
        providers=providers,
        agents=agents,
        default_agent_id=default_agent,
        session=session,
        state_dir=state_dir,
        config_path=config_path,
        log_content=log_content,
        metrics_dir=env.get("PROMETHEUS_MULTIPROC_DIR", ""),
        ignored_keys=tuple(ignored),
        notices=tuple(notices),
    )


def settings_from_dict(raw: Mapping[str, Any], env: Mapping[str, str] | None = None) -> Settings:
    """Validate a config given as a dict (tests, embedding) with the process's environment."""
    env = dict(os.environ) if env is None else env
    _, state_dir = resolve_config_path(None, env)
    return parse_settings(dict(raw), env, state_dir)


def load_settings(path: str | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Find, read and validate the config; raise ``ConfigError`` with one line on any problem."""
    env = dict(os.environ) if env is None else env
    config_path, state_dir = resolve_config_path(path, env)
    raw: Any = {}
    if config_path:
        try:
            text = Path(config_path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"config: cannot read {config_path}: {exc}") from None
        try:
            raw = json5.loads(text) if text.strip() else {}
        except ValueError as exc:
            raise ConfigError(f"config: {config_path} is not valid JSON5: {exc}") from None
    return parse_settings(raw, env, state_dir, config_path)


def describe_startup(settings: Settings) -> list[str]:
    """The lines a server prints at start: auth mode, agents and providers, ignored keys."""
    lines = [f"auth mode: {settings.gateway.auth.mode}"]
    for agent in settings.agents:
        mark = " (default)" if agent.id == settings.default_agent_id else ""
        lines.append(f"agent {agent.id}{mark}: {' -> '.join(agent.model.chain)}")
    providers = [f"{p.id} ({p.api})" for p in settings.providers.values()]
    lines.append("providers: " + ", ".join(providers))
    if settings.uses_echo_only:
        lines.append("no model provider configured: agents answer with the built-in echo provider")
    if settings.ignored_keys:
        lines.append(
            "ignoring config keys this gateway does not use: " + ", ".join(settings.ignored_keys)
        )
    lines += settings.notices
    return lines
