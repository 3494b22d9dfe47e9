"""`notifier metrics-exporter`: /metrics for a host that runs no web, such as a worker host.

Counters and histograms live in files in each host's PROMETHEUS_MULTIPROC_DIR, one per
process, so a web's /metrics sums only the processes of its own host (or volume). A worker
host serves its own through this small app; state read from the database and the broker
(queue depths, heartbeats, subscribers) is the same from everywhere and comes from the web's
/metrics. The same rules as the web's: METRICS_ALLOW_NETWORKS and METRICS_TOKEN.
"""

from __future__ import annotations

from flask import Flask, Response, request
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from notifier.config import Settings
from notifier.metrics import RecordedCollector
from notifier.web.metrics import refused


def create_exporter_app(settings: Settings) -> Flask:
    app = Flask(__name__)

    @app.get("/metrics")
    def metrics() -> Response:
        if (refusal := refused(settings)) is not None:
            return refusal
        registry = CollectorRegistry()
        registry.register(RecordedCollector(settings.metrics_dir))
        encode, content_type = choose_encoder(request.headers.get("Accept", ""))
        return Response(encode(registry), content_type=content_type)

    return app
