"""`notifier metrics-exporter`: a worker host's own counters, under the web's access rules."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from notifier.web.host_metrics import create_exporter_app
from tests.conftest import make_settings


def _sent_in_a_process_of_its_own(run_dir: Path, count: int) -> None:
    """What a worker process on this host writes: a file of its own counters."""
    run_dir.mkdir(parents=True, exist_ok=True)
    code = f"from notifier import metrics\nmetrics.DELIVERIES.labels('email', 'sent').inc({count})"
    subprocess.run([sys.executable, "-c", code], check=True,
                   env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(run_dir)})  # fmt: skip


def test_the_exporter_sums_this_hosts_processes_for_the_internal_network_only(tmp_path):
    settings = make_settings(tmp_path, METRICS_TOKEN="scrape-token")
    _sent_in_a_process_of_its_own(settings.metrics_dir / "worker-1@host", 3)
    _sent_in_a_process_of_its_own(settings.metrics_dir / "beat-2@host", 4)
    client = create_exporter_app(settings).test_client()
    token = {"Authorization": "Bearer scrape-token"}

    outside = client.get("/metrics", environ_base={"REMOTE_ADDR": "203.0.113.7"}, headers=token)
    no_token = client.get("/metrics", environ_base={"REMOTE_ADDR": "10.1.2.3"})
    inside = client.get("/metrics", environ_base={"REMOTE_ADDR": "10.1.2.3"}, headers=token)

    assert (outside.status_code, no_token.status_code, inside.status_code) == (403, 401, 200)
    assert 'notifier_deliveries_total{channel="email",outcome="sent"} 7.0' in inside.text
