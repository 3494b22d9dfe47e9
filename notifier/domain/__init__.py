"""The rules of the service. Imports neither Flask nor Celery; callers own the transaction."""
