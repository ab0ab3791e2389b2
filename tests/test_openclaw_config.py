"""A config written for the real OpenClaw (issue 2, verbatim) starts the gateway unchanged."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import TOKEN, GatewayProcess
from tests.upstream import Upstream, count_completion_tokens

# Verbatim from issue 2. Its `fake` provider is at 127.0.0.1:18790, where the test's upstream
# listens; the gateway's own port 18789 is overridden by OPENCLAW_GATEWAY_PORT (the fixture).
OPENCLAW_CONFIG = """\
{
  gateway: { mode: "local", port: 18789, bind: "loopback",
    auth: { mode: "token", token: "test-token" },
    http: { endpoints: { chatCompletions: { enabled: true } } }, tailscale: { mode: "off" } },
  update: { checkOnStart: false, auto: { enabled: false } },
  telemetry: { enabled: false },
  discovery: { mdns: { mode: "off" } },
  models: { mode: "merge", catalogRefresh: { enabled: false },
    providers: { fake: { baseUrl: "http://127.0.0.1:18790/v1", apiKey: "fake-key", api: "openai-completions",
      models: [ { id: "echo-model", name: "Echo Model", reasoning: false, input: ["text", "image"],
                  cost: { input: 0, output: 0, cacheRead: 0, cacheWrite: 0 }, contextWindow: 128000, maxTokens: 4096 } ] } } },
  agents: { defaults: { model: { primary: "fake/echo-model", fallbacks: [] }, heartbeat: { every: "0m" } },
            entries: { main: { model: "fake/echo-model" } } },
}
"""
FAKE_PORT = 18790


@pytest.fixture(scope="module")
def fake_upstream() -> Iterator[Upstream]:
    server = Upstream(port=FAKE_PORT).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def openclaw_gateway(fake_upstream, tmp_path_factory) -> Iterator[GatewayProcess]:
    tmp = tmp_path_factory.mktemp("openclaw-config")
    path = tmp / "openclaw.json"
    path.write_text(OPENCLAW_CONFIG)
    process = GatewayProcess(None, tmp, env={"OPENCLAW_CONFIG_PATH": str(path)}).start()
    yield process
    process.stop()


@pytest.fixture
def fake(fake_upstream) -> Iterator[Upstream]:
    fake_upstream.clear()
    yield fake_upstream


def test_the_token_from_the_config_is_required(openclaw_gateway):
    import openai

    with pytest.raises(openai.AuthenticationError):
        openclaw_gateway.client(api_key="nope").models.list()
    assert openclaw_gateway.client(api_key=TOKEN).models.list().data[0].id == "openclaw"


def test_chat_completion_through_the_fake_provider(openclaw_gateway, fake):
    reply = openclaw_gateway.client().chat.completions.create(
        model="openclaw", messages=[{"role": "user", "content": "hello openclaw"}]
    )
    assert reply.choices[0].message.content == "You said: hello openclaw"
    assert reply.usage.completion_tokens == count_completion_tokens("You said: hello openclaw")
    request = fake.requests[-1]
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == "Bearer fake-key"
    assert request.body["model"] == "echo-model"


def test_streamed_chat_completion_through_the_fake_provider(openclaw_gateway, fake):
    stream = openclaw_gateway.client().chat.completions.create(
        model="openclaw/main",
        stream=True,
        messages=[{"role": "user", "content": "stream through openclaw"}],
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == (
        "You said: stream through openclaw"
    )
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert fake.requests[-1].body["stream"] is True


def test_the_models_list_shows_the_entries_agent(openclaw_gateway):
    ids = [m.id for m in openclaw_gateway.client().models.list()]
    assert ids == ["openclaw", "openclaw/default", "openclaw/main"]


def test_unused_openclaw_keys_are_one_warning_line_at_start(openclaw_gateway):
    lines = [line for line in openclaw_gateway.log().splitlines() if "ignoring config keys" in line]
    assert len(lines) == 1
    named = lines[0].split(": ", 2)[-1].split(", ")
    assert set(named) == {
        "gateway.tailscale",
        "models.catalogRefresh",
        "update",
        "telemetry",
        "discovery",
        "agents.defaults.heartbeat",
    }
