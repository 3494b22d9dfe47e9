"""Celery entry: `celery -A worker worker` / `celery -A worker beat`."""

from notifier.celery_app import make_celery
from notifier.config import check_production

check_production()
celery = make_celery()
