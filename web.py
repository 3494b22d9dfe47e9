"""WSGI entry: `gunicorn web:app`."""

from notifier.web import create_app

app = create_app()
