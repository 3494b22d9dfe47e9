"""WSGI entry: `gunicorn web:app`."""

from notifier.config import check_production
from notifier.web import create_app

check_production()
app = create_app()
