"""Probes for load balancers and orchestrators: /healthz (the process answers) and /readyz
(it can do its work: database, broker and schema checked, each bounded in time)."""

from __future__ import annotations

import threading
import time

from flask import Blueprint, jsonify

from notifier.ops.readiness import Readiness, check_readiness
from notifier.web.context import settings
from notifier.web.metrics import from_internal_network

bp = Blueprint("health", __name__)
REUSE_SECONDS = 1.0  # probes hammering /readyz share one round of checks per second

_lock = threading.Lock()
_last: dict[str, tuple[float, Readiness]] = {}


def _readiness() -> Readiness:
    current = settings()
    key = f"{current.database_url}|{current.broker_url}"
    with _lock:
        seen = _last.get(key)
        if seen and time.monotonic() - seen[0] < REUSE_SECONDS:
            return seen[1]
        readiness = check_readiness(current)
        _last[key] = (time.monotonic(), readiness)
        return readiness


def _no_store(response):
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/healthz")
def healthz():
    """Alive: no dependency is touched, so a database outage never restarts the web app."""
    return _no_store(jsonify(status="ok"))


@bp.get("/readyz")
def readyz():
    """200 when database, broker and migrations are fine; 503 naming what is not. What is
    checked and why it fails (hosts, versions) is told to internal networks only."""
    readiness = _readiness()
    if from_internal_network(settings()):
        response = _no_store(jsonify(readiness.as_json()))
    else:
        response = _no_store(jsonify(status=readiness.as_json()["status"]))
    response.status_code = 200 if readiness.ready else 503
    return response
