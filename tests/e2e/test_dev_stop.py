"""`notifier dev` stopped by a plain `kill` (SIGTERM) or by Ctrl-C (SIGINT) stops web,
worker, beat and the worker's own processes, says so, and frees its port."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.support.processes import wait_until
from tests.support.smtp import free_port


def _stat(pid: int) -> tuple[int, str, str] | None:
    """(parent pid, state, start time) from /proc, or None once the process is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return int(fields[1]), fields[0], fields[19]


def _descendants(root: int) -> dict[int, str]:
    """Every process under `root`, with its start time (so a reused pid is not mistaken)."""
    parents: dict[int, list[int]] = {}
    starts: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (found := _stat(int(entry.name))) is not None:
            parents.setdefault(found[0], []).append(int(entry.name))
            starts[int(entry.name)] = found[2]
    seen, todo = {}, list(parents.get(root, []))
    while todo:
        pid = todo.pop()
        seen[pid] = starts[pid]
        todo.extend(parents.get(pid, []))
    return seen


def _alive(pid: int, started: str) -> bool:
    found = _stat(pid)
    return found is not None and found[2] == started and found[1] != "Z"


def _port_free(port: int) -> bool:
    """Nothing listens and a new server can bind it (SO_REUSEADDR, as servers do, since our
    own requests leave connections in TIME_WAIT)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _cmdlines(pids) -> str:
    lines = []
    for pid in pids:
        with contextlib.suppress(OSError):
            lines.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode())
    return "\n".join(lines)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_dev_stops_everything_on_a_signal_and_says_so(tmp_path, signum):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL",
           "SMTP_URL", "FEED_URLS", "PUBLIC_URL", "SECRET_KEY")}  # fmt: skip
    env.update(NOTIFIER_DATA_DIR=str(tmp_path / "var"), PYTHONUNBUFFERED="1")
    log_path = tmp_path / "dev.log"
    with log_path.open("wb") as log:
        dev = subprocess.Popen(
            [sys.executable, "-m", "notifier.cli", "dev", "--port", str(port)],
            cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        wait_until(lambda: _up(f"http://127.0.0.1:{port}"), timeout=60, message="dev not up")
        # The worker's own processes too: its feeds node is the last one it starts.
        wait_until(lambda: "feeds-worker" in _cmdlines(_descendants(dev.pid)), timeout=60,
                   message="the worker never started its feeds node")  # fmt: skip
        # web x2, worker x2+ (its pool children may come after the feeds node), feeds, beat
        wait_until(lambda: len(_descendants(dev.pid)) >= 6, timeout=60,
                   message="fewer than 6 processes under notifier dev")  # fmt: skip
        processes = _descendants(dev.pid)
        os.kill(dev.pid, signum)  # the dev process alone, as `kill` or a supervisor does
        dev.wait(timeout=30)  # DEV_STOP_SECONDS is 5 by default: this is a generous ceiling
        output = log_path.read_text(errors="replace")
        assert dev.returncode == 0, output[-3000:]
        assert f"{signum.name} received: stopping web, worker, beat" in output
        assert "Stopped web, worker, beat" in output
        wait_until(lambda: not [p for p, s in processes.items() if _alive(p, s)], timeout=10,
                   message="processes of notifier dev outlived it")  # fmt: skip
        assert _port_free(port), f"port {port} still taken"
    finally:
        if dev.poll() is None:
            os.killpg(dev.pid, signal.SIGKILL)
            dev.wait()


def _up(base: str) -> bool:
    try:
        return requests.get(base, timeout=2).status_code == 200
    except (requests.ConnectionError, requests.Timeout):  # up, but not answering yet
        return False
