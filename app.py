"""Development server: python app.py [--config PATH] [--port N]."""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import sys  # noqa: E402

from openclaw_gateway.config import ConfigError, load_settings  # noqa: E402


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
    from openclaw_gateway.devserver import serve

    return serve(settings, args.port)


if __name__ == "__main__":
    sys.exit(main())
