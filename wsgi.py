"""WSGI entry point: ``gunicorn -c gunicorn.conf.py wsgi:application``."""

from openclaw_gateway import create_app
from openclaw_gateway.server import freeze_startup_heap

application = create_app()
freeze_startup_heap()
