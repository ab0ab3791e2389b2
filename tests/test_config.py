"""config.py as a unit: finding the file, ${VAR}, OpenClaw's shapes, ignored keys, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from openclaw_gateway.config import (
    ConfigError,
    ModelRef,
    describe_startup,
    load_settings,
    parse_settings,
)

UP = {"baseUrl": "http://127.0.0.1:9/v1", "models": [{"id": "m"}]}


def _parse(raw: dict[str, Any], env: dict[str, str] | None = None, state: str = "/tmp/state"):
    return parse_settings(raw, env or {}, state)


def _error(raw: dict[str, Any], env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        _parse(raw, env)
    message = str(caught.value)
    assert "\n" not in message
    return message


# ---- finding the file


def test_no_file_at_all_is_a_valid_start(tmp_path):
    settings = load_settings(None, {"OPENCLAW_STATE_DIR": str(tmp_path)})
    assert settings.config_path is None
    assert [a.id for a in settings.agents] == ["main"]
    assert settings.agents[0].model == ModelRef("echo/echo")
    assert settings.gateway.port == 18789
    assert settings.gateway.host == "127.0.0.1"
    assert settings.gateway.auth.mode == "none"
    assert settings.gateway.http.chat_completions.enabled is False
    assert settings.session.sqlite_path.startswith(str(tmp_path))


def test_the_state_dir_file_is_found(tmp_path):
    (tmp_path / "openclaw.json").write_text("{gateway: {port: 4000}}")
    settings = load_settings(None, {"OPENCLAW_STATE_DIR": str(tmp_path)})
    assert settings.gateway.port == 4000
    assert settings.config_path == str(tmp_path / "openclaw.json")


def test_config_path_env_wins_over_the_state_dir(tmp_path):
    (tmp_path / "openclaw.json").write_text("{gateway: {port: 4000}}")
    other = tmp_path / "other.json5"
    other.write_text("{gateway: {port: 4001}}")
    env = {"OPENCLAW_STATE_DIR": str(tmp_path), "OPENCLAW_CONFIG_PATH": str(other)}
    assert load_settings(None, env).gateway.port == 4001


def test_an_explicit_path_wins_over_the_env(tmp_path):
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    first.write_text("{gateway: {port: 4002}}")
    second.write_text("{gateway: {port: 4003}}")
    env = {"OPENCLAW_STATE_DIR": str(tmp_path), "OPENCLAW_CONFIG_PATH": str(first)}
    assert load_settings(str(second), env).gateway.port == 4003


def test_a_named_file_that_does_not_exist_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="config: no file at"):
        load_settings(str(tmp_path / "missing.json"), {"OPENCLAW_STATE_DIR": str(tmp_path)})


def test_json5_syntax_is_accepted(tmp_path):
    path = tmp_path / "c.json5"
    path.write_text(
        """// comment
        {
          gateway: { port: 4100, /* inline */ auth: { mode: 'token', token: 'abc', }, },
        }"""
    )
    settings = load_settings(str(path), {"OPENCLAW_STATE_DIR": str(tmp_path)})
    assert (settings.gateway.port, settings.gateway.auth.token) == (4100, "abc")


def test_invalid_json5_is_one_line_naming_the_file(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text("{gateway: {port: }")
    with pytest.raises(ConfigError) as caught:
        load_settings(str(path), {"OPENCLAW_STATE_DIR": str(tmp_path)})
    assert str(path) in str(caught.value)
    assert "\n" not in str(caught.value)


def test_an_empty_file_is_the_defaults(tmp_path):
    path = tmp_path / "empty.json"
    path.write_text("  \n")
    assert load_settings(str(path), {"OPENCLAW_STATE_DIR": str(tmp_path)}).agents[0].id == "main"


# ---- ${VAR}


def test_env_vars_are_substituted_anywhere():
    raw = {
        "gateway": {"auth": {"token": "${TOK}"}},
        "models": {"providers": {"up": {**UP, "apiKey": "sk-${KEY}-x"}}},
        "agents": {"list": [{"id": "main", "systemPrompt": "Hi ${NAME}, ${NAME}."}]},
    }
    settings = _parse(raw, {"TOK": "t0k", "KEY": "secret", "NAME": "Ada"})
    assert settings.gateway.auth.token == "t0k"
    assert settings.providers["up"].api_key == "sk-secret-x"
    assert settings.agents[0].system_prompt == "Hi Ada, Ada."


def test_a_missing_env_var_names_the_key_and_the_var():
    message = _error({"gateway": {"auth": {"token": "${NOT_SET_ANYWHERE}"}}})
    assert message == "gateway.auth.token: environment variable NOT_SET_ANYWHERE is not set"


def test_a_missing_env_var_in_a_list_names_the_index():
    message = _error({"gateway": {"trustedProxies": ["127.0.0.1", "${PROXY}"]}})
    assert message.startswith("gateway.trustedProxies[1]: environment variable PROXY")


def test_double_dollar_keeps_the_literal():
    raw = {"agents": {"list": [{"id": "main", "systemPrompt": "say $${HOME}"}]}}
    assert _parse(raw).agents[0].system_prompt == "say ${HOME}"


# ---- agents


def test_agents_from_list_and_entries():
    raw = {
        "models": {"providers": {"up": UP}},
        "agents": {
            "defaults": {"model": "up/m"},
            "list": [{"id": "alpha"}, {"id": "Beta", "default": True}],
            "entries": {"gamma": {"systemPrompt": "g"}, "delta": {}},
        },
    }
    settings = _parse(raw)
    assert [a.id for a in settings.agents] == ["alpha", "beta", "gamma", "delta"]
    assert settings.default_agent_id == "beta"
    assert settings.agent("gamma").system_prompt == "g"


def test_agent_model_as_a_string():
    raw = {
        "models": {"providers": {"up": UP}},
        "agents": {"entries": {"main": {"model": "up/m"}}},
    }
    assert _parse(raw).agent("main").model == ModelRef("up/m")


def test_agent_model_as_primary_and_fallbacks():
    raw = {
        "models": {"providers": {"up": UP, "alt": UP}},
        "agents": {"list": [{"id": "main", "model": {"primary": "up/m", "fallbacks": ["alt/m"]}}]},
    }
    assert _parse(raw).agent("main").model == ModelRef("up/m", ("alt/m",))


def test_defaults_model_applies_to_agents_without_one():
    raw = {
        "models": {"providers": {"up": UP}},
        "agents": {
            "defaults": {"model": {"primary": "up/m", "fallbacks": []}},
            "list": [{"id": "a"}],
        },
    }
    assert _parse(raw).agent("a").model == ModelRef("up/m")


def test_without_any_model_the_first_provider_model_is_the_default():
    assert _parse({"models": {"providers": {"up": UP}}}).agents[0].model == ModelRef("up/m")


def test_without_providers_agents_use_echo():
    settings = _parse({"agents": {"list": [{"id": "a"}]}})
    assert settings.agent("a").model == ModelRef("echo/echo")
    assert settings.uses_echo_only


def test_provider_fields():
    raw = {
        "models": {
            "providers": {
                "up": {
                    "baseUrl": "http://127.0.0.1:9/v1/",
                    "apiKey": "k",
                    "api": "openai-completions",
                    "headers": {"X-Org": "o"},
                    "models": [{"id": "a", "name": "A", "contextWindow": 1000}, "b"],
                }
            }
        }
    }
    provider = _parse(raw).providers["up"]
    assert provider.base_url == "http://127.0.0.1:9/v1"
    assert (provider.api_key, dict(provider.headers), provider.models) == (
        "k",
        {"X-Org": "o"},
        ("a", "b"),
    )


# ---- ignored keys


def test_openclaw_keys_this_gateway_does_not_use_are_collected():
    raw = {
        "update": {"checkOnStart": False},
        "telemetry": {"enabled": False},
        "discovery": {"mdns": {"mode": "off"}},
        "channels": {},
        "gateway": {"mode": "local", "tailscale": {"mode": "off"}},
        "models": {"mode": "merge", "catalogRefresh": {"enabled": False}},
        "agents": {"defaults": {"heartbeat": {"every": "0m"}}},
    }
    settings = _parse(raw)
    assert set(settings.ignored_keys) == {
        "update",
        "telemetry",
        "discovery",
        "channels",
        "gateway.tailscale",
        "models.catalogRefresh",
        "agents.defaults.heartbeat",
    }


def test_ignored_keys_are_one_startup_line():
    settings = _parse({"update": {}, "telemetry": {}})
    lines = [line for line in describe_startup(settings) if "ignoring" in line]
    assert lines == ["ignoring config keys this gateway does not use: update, telemetry"]


def test_a_clean_config_ignores_nothing():
    raw = {"gateway": {"port": 1234}, "models": {"providers": {"up": UP}}}
    assert _parse(raw).ignored_keys == ()


# ---- wrong values


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"gateway": "x"}, "gateway: expected object, received string"),
        ({"gateway": {"port": "abc"}}, "gateway.port: expected integer, received string"),
        ({"gateway": {"port": 70000}}, "gateway.port: expected integer from 1 to 65535"),
        ({"gateway": {"port": 1.5}}, "gateway.port: expected integer, received number"),
        ({"gateway": {"bind": "everywhere"}}, "gateway.bind: expected loopback, lan or an IP address"),
        ({"gateway": {"auth": {"mode": "magic"}}}, "gateway.auth.mode: expected one of none, token, password"),
        ({"gateway": {"auth": {"token": 5}}}, "gateway.auth.token: expected string, received number"),
        ({"gateway": {"trustedProxies": "127.0.0.1"}}, "gateway.trustedProxies: expected array of strings, received string"),
        ({"gateway": {"trustedProxies": ["nope"]}}, "gateway.trustedProxies[0]: expected an IP address or CIDR"),
        (
            {"gateway": {"http": {"endpoints": {"chatCompletions": {"enabled": "yes"}}}}},
            "gateway.http.endpoints.chatCompletions.enabled: expected boolean, received string",
        ),
        (
            {"gateway": {"http": {"endpoints": {"chatCompletions": {"maxBodyBytes": -1}}}}},
            "gateway.http.endpoints.chatCompletions.maxBodyBytes: expected integer from 1 to 1.09951e+12",
        ),
        (
            {"gateway": {"auth": {"rateLimit": {"exemptLoopback": 0}}}},
            "gateway.auth.rateLimit.exemptLoopback: expected boolean, received number",
        ),
        ({"models": {"providers": {"up": {"models": ["m"]}}}}, "models.providers.up.baseUrl: expected the provider's URL, e.g. http://127.0.0.1:11434/v1"),
        ({"models": {"providers": {"up": {**UP, "baseUrl": "ftp://x"}}}}, "models.providers.up.baseUrl: expected an http:// or https:// URL"),
        ({"models": {"providers": {"up": {**UP, "api": "soap"}}}}, "models.providers.up.api: expected one of openai-completions, anthropic-messages, echo"),
        ({"models": {"providers": {"up": {**UP, "models": "m"}}}}, "models.providers.up.models: expected array, received string"),
        ({"models": {"providers": {"up": {**UP, "headers": {"X": 1}}}}}, "models.providers.up.headers: expected object of strings"),
        ({"agents": {"list": {"id": "main"}}}, "agents.list: expected array, received object"),
        ({"agents": {"list": [{"id": "Bad Id!"}]}}, "agents.list[0].id: expected an agent id matching [a-z0-9][a-z0-9_-]{0,63}"),
        ({"agents": {"list": [{"id": "a", "model": 5}]}}, "agents.list[0].model: expected string or {primary, fallbacks}, received number"),
        ({"agents": {"list": [{"id": "a", "model": {"fallbacks": []}}]}}, "agents.list[0].model.primary: expected string, received null"),
        ({"agents": {"list": [{"id": "a"}, {"id": "a"}]}}, "agents: agent id 'a' is defined twice"),
        ({"agents": {"entries": {"main": {"systemPrompt": 3}}}}, "agents.entries.main.systemPrompt: expected string, received number"),
        ({"session": {"store": "memcached"}}, 'session.store: expected "sqlite" or a redis:// URL'),
        ({"logging": {"content": "yes"}}, "logging.content: expected boolean, received string"),
    ],
)  # fmt: skip
def test_a_wrong_value_names_the_key_path(raw, expected):
    assert _error(raw) == expected


def test_an_agent_model_naming_no_provider_is_an_error():
    message = _error({"agents": {"list": [{"id": "a", "model": "nowhere/m"}]}})
    assert message.startswith("agents.a.model: 'nowhere/m' names no configured provider")


# ---- auth mode and env overrides


def test_auth_mode_unset_with_a_token_is_token():
    assert _parse({"gateway": {"auth": {"token": "t"}}}).gateway.auth.mode == "token"


def test_auth_mode_unset_with_a_password_is_password():
    auth = _parse({"gateway": {"auth": {"password": "p", "token": "t"}}}).gateway.auth
    assert (auth.mode, auth.secret) == ("password", "p")


def test_auth_mode_unset_without_secrets_on_loopback_is_open_with_a_notice():
    settings = _parse({})
    assert settings.gateway.auth.mode == "none"
    assert any("open on loopback" in line for line in describe_startup(settings))


@pytest.mark.parametrize(
    ("raw", "env", "expected"),
    [
        ({"gateway": {"auth": {"mode": "token"}}}, {}, "gateway.auth.token: token mode needs a token"),
        ({"gateway": {"auth": {"mode": "password"}}}, {}, "gateway.auth.password: password mode needs a password"),
        ({"gateway": {"bind": "lan", "auth": {"mode": "none"}}}, {}, "gateway.auth.mode: 'none' is refused"),
        ({"gateway": {"bind": "lan"}}, {}, "gateway.auth.token: token mode needs a token"),
    ],
)  # fmt: skip
def test_startup_refusals(raw, env, expected):
    assert _error(raw, env).startswith(expected)


def test_token_from_the_env_overrides_the_file():
    raw = {"gateway": {"auth": {"mode": "token", "token": "file"}}}
    assert _parse(raw, {"OPENCLAW_GATEWAY_TOKEN": "env"}).gateway.auth.token == "env"


def test_token_from_the_env_satisfies_token_mode():
    raw = {"gateway": {"auth": {"mode": "token"}}}
    assert _parse(raw, {"OPENCLAW_GATEWAY_TOKEN": "env"}).gateway.auth.secret == "env"


def test_password_from_the_env():
    auth = _parse({}, {"OPENCLAW_GATEWAY_PASSWORD": "pw"}).gateway.auth
    assert (auth.mode, auth.secret) == ("password", "pw")


def test_gateway_port_from_the_env():
    settings = _parse({"gateway": {"port": 1000}}, {"OPENCLAW_GATEWAY_PORT": "2000"})
    assert (settings.gateway.port, settings.gateway.host) == (2000, "127.0.0.1")


def test_paas_port_binds_all_interfaces():
    settings = _parse({"gateway": {"auth": {"token": "t"}}}, {"PORT": "5000"})
    assert (settings.gateway.port, settings.gateway.host) == (5000, "0.0.0.0")


def test_a_bad_port_in_the_env_is_an_error():
    assert _error({}, {"OPENCLAW_GATEWAY_PORT": "http"}).startswith("PORT: expected a port number")


@pytest.mark.parametrize("name", ["OPENCLAW_SESSION_STORE", "REDIS_URL"])
def test_session_store_from_the_env(name):
    assert (
        _parse({}, {name: "redis://127.0.0.1:6379/3"}).session.store == "redis://127.0.0.1:6379/3"
    )


def test_session_store_env_wins_over_redis_url():
    env = {"OPENCLAW_SESSION_STORE": "redis://a:1/0", "REDIS_URL": "redis://b:2/0"}
    assert _parse({}, env).session.store == "redis://a:1/0"


def test_the_file_on_disk_with_env_substitution(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"gateway": {"auth": {"token": "${T}"}}}))
    settings = load_settings(str(path), {"OPENCLAW_STATE_DIR": str(tmp_path), "T": "tt"})
    assert settings.gateway.auth.token == "tt"
    assert Path(settings.config_path or "") == path
