"""Command line: ``python -m openclaw_gateway agent | serve | config check | sessions``."""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import uuid  # noqa: E402

from .config import ConfigError, Settings, describe_startup, load_settings  # noqa: E402


def _agent(settings: Settings, args: argparse.Namespace) -> int:
    from .agent.errors import GatewayError
    from .agent.types import AgentEvent, AgentRunRequest, Message
    from .runtime import Gateway

    runtime = Gateway(settings)
    route = runtime.route(agent_id=args.agent, session_key=args.session_key)
    request = AgentRunRequest(
        agent=route.agent,
        session_key=route.session_key,
        stateless=route.stateless,
        messages=[Message("user", args.message)],
        run_id=uuid.uuid4().hex,
    )

    def emit(event: AgentEvent) -> None:
        if event.stream == "assistant":
            sys.stdout.write(event.data["delta"])
            sys.stdout.flush()
        elif event.stream == "tool_result":
            # Agent tools on stderr, so stdout stays the reply alone.
            mark = "error" if event.data["isError"] else "ok"
            print(f"[tool {event.data['name']}: {mark}]", file=sys.stderr, flush=True)

    try:
        result = runtime.run_agent(request, emit=emit if args.stream else None)
    except GatewayError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    finally:
        runtime.close()
    if args.json:
        print(
            json.dumps(
                {
                    "runId": result.run_id,
                    "sessionKey": result.session_key,
                    "text": result.text,
                    "finishReason": result.finish_reason,
                    "toolCalls": [call.to_openai() for call in result.tool_calls],
                    "usage": result.usage.to_openai(),
                }
            )
        )
    elif args.stream:
        print()
    else:
        print(result.text)
    return 0


def _sessions(settings: Settings, args: argparse.Namespace) -> int:
    from .agent.errors import GatewayError
    from .runtime import Gateway

    runtime = Gateway(settings)
    try:
        if args.action == "list":
            for info in runtime.list_sessions():
                print(f"{info.key}\t{info.agent_id}\t{info.message_count}\t{info.updated_at}")
        elif args.action == "show":
            entries = runtime.history(args.key)
            if not entries:
                print(f"no session {args.key}", file=sys.stderr)
                return 1
            for entry in entries:
                print(json.dumps(entry, ensure_ascii=False))
        elif args.action == "delete":
            if not runtime.delete_session(args.key):
                print(f"no session {args.key}", file=sys.stderr)
                return 1
    except GatewayError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    finally:
        runtime.close()
    return 0


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    from .devserver import serve

    return serve(settings, args.port)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m openclaw_gateway")
    parser.add_argument("--config", help="path to openclaw.json (JSON5)")
    commands = parser.add_subparsers(dest="command", required=True)
    agent = commands.add_parser("agent", help="run one agent turn")
    agent.add_argument("--message", "-m", required=True)
    agent.add_argument("--agent")
    agent.add_argument("--session-key")
    agent.add_argument("--stream", action="store_true", help="print the reply as it streams")
    agent.add_argument("--json", action="store_true", help="print the result as JSON")
    serve = commands.add_parser("serve", help="run the development server")
    serve.add_argument("--port", type=int)
    config = commands.add_parser("config", help="configuration commands")
    config.add_argument("action", choices=["check"])
    sessions = commands.add_parser("sessions", help="list, show or delete sessions")
    sessions.add_argument("action", choices=["list", "show", "delete"])
    sessions.add_argument("key", nargs="?")
    for sub in (agent, serve, config, sessions):
        sub.add_argument("--config", dest="sub_config", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.sub_config or args.config)
    except ConfigError as exc:
        print(f"openclaw-gateway: {exc}", file=sys.stderr)
        return 2
    if args.command == "config":
        print(f"config ok: {settings.config_path or 'no file (built-in defaults)'}")
        for line in describe_startup(settings):
            print(f"  {line}")
        return 0
    if args.command == "sessions":
        if args.action != "list" and not args.key:
            parser.error("sessions show/delete need a KEY")
        return _sessions(settings, args)
    if args.command == "serve":
        return _serve(settings, args)
    return _agent(settings, args)


if __name__ == "__main__":
    sys.exit(main())
