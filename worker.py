"""Celery entry: `celery -A worker worker` / `celery -A worker beat`."""

from notifier.celery_app import make_celery

celery = make_celery()
