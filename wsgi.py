"""WSGI entry point: ``gunicorn -c gunicorn.conf.py wsgi:application``."""

from openclaw_gateway import create_app

application = create_app()
