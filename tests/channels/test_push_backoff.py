"""The backoff shared through the database, while the database is away."""

from __future__ import annotations

import socket
import threading

from notifier.channels.push_backoff import SharedBackoff
from tests.support.processes import wait_until


class _RefusingDatabase:
    """A TCP port that accepts connections and closes them at once: a database that is down
    behind a proxy. Counts the connection attempts."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.attempts = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            self.attempts += 1
            connection.close()

    def close(self) -> None:
        self.listener.close()


def test_a_database_outage_is_asked_about_once_per_refresh_not_once_per_push():
    database = _RefusingDatabase()
    try:
        backoff = SharedBackoff(
            f"postgresql+psycopg://postgres@127.0.0.1:{database.port}/away",
            refresh_seconds=3600,  # one refresh period spans the whole test
        )
        waits = [backoff.wait_seconds("https://fcm.googleapis.com") for _ in range(50)]
        wait_until(lambda: database.attempts >= 1, timeout=5, interval=0.05)
    finally:
        database.close()
    assert waits == [0.0] * 50
    assert database.attempts == 1
