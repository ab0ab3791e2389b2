"""Development server: python app.py [--config PATH] [--port N]."""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import sys  # noqa: E402

from gevent.pywsgi import WSGIServer  # noqa: E402

from openclaw_gateway.config import ConfigError, describe_startup, load_settings  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description="Run the gateway's development server.")
    parser.add_argument("--config", help="path to openclaw.json (JSON5)")
    parser.add_argument("--port", type=int, help="port to listen on (default: the config's)")
    args = parser.parse_args()
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        print(f"openclaw-gateway: {exc}", file=sys.stderr)
        return 2

    from openclaw_gateway import create_app
    from openclaw_gateway.server import DevHandler, dev_listener

    app = create_app(settings)
    host, port = settings.gateway.host, args.port or settings.gateway.port
    listener = dev_listener(host, port)
    print(f"openclaw-gateway listening on http://{host}:{listener.getsockname()[1]}", flush=True)
    for line in describe_startup(settings):
        print(f"  {line}", flush=True)
    server = WSGIServer(listener, app, handler_class=DevHandler, log=None)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
