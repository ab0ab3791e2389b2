"""A PaaS start: the Procfile's command with nothing but environment variables."""

from __future__ import annotations

import json
import shlex

from tests.conftest import ROOT, TOKEN, GatewayProcess, unique, wait_until


def test_procfile_command_with_only_env_vars_serves_a_chat(upstream, tmp_path, http):
    web = (ROOT / "Procfile").read_text().strip()
    assert shlex.split(web) == shlex.split(
        "web: gunicorn -c gunicorn.conf.py wsgi:application"
    )  # the command GatewayProcess runs
    gw = GatewayProcess(
        None,
        tmp_path,
        env={
            "OPENCLAW_GATEWAY_TOKEN": TOKEN,
            "OPENCLAW_PROVIDER_BASE_URL": upstream.base_url,
            "OPENCLAW_PROVIDER_API_KEY": "upstream-secret-key",
            "OPENCLAW_PROVIDER_MODEL": "echo-model",
            "OPENCLAW_CHAT_COMPLETIONS": "1",
        },
        workers=2,
    )
    # As a PaaS does: $PORT only (config.py then binds all interfaces), no config file.
    del gw.env["OPENCLAW_GATEWAY_PORT"]
    gw.env["PORT"] = str(gw.port)
    assert not gw.config_path.exists()
    try:
        gw.start()
        text = unique("paas")
        body = json.dumps({"model": "openclaw", "messages": [{"role": "user", "content": text}]})
        url = gw.url + "/v1/chat/completions"
        assert http.request("POST", url, body=body).status == 401
        response = http.request(
            "POST", url, body=body, headers={"Authorization": f"Bearer {TOKEN}"}
        )
        assert response.status == 200
        assert json.loads(response.data)["choices"][0]["message"]["content"] == f"You said: {text}"
        sent = upstream.requests[-1]
        assert sent.body["model"] == "echo-model"
        assert sent.headers["authorization"] == "Bearer upstream-secret-key"
        assert "Listening at: http://0.0.0.0:" in gw.log()
    finally:
        gw.stop()


def test_gunicorn_access_log_works_with_the_gateway_worker(upstream, start_gateway, http):
    # gevent-websocket's own worker loses it (DESIGN fault 2); GUNICORN_CMD_ARGS turns it on.
    gw = start_gateway(
        None, env={"GUNICORN_CMD_ARGS": "--access-logfile - --access-logformat '%(r)s %(s)s'"}
    )
    path = "/healthz?probe=" + unique("access")
    assert http.request("GET", gw.url + path).status == 200
    wait_until(lambda: f"GET {path} HTTP/1.1 200" in gw.log(), 10, "gunicorn's access line")
