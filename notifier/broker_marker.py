"""Notice within seconds that the broker lost its queues (Redis restarted without persistence,
FLUSHALL, a failover to an empty replica).

A marker key lives in the broker next to the queues. Whatever wipes the queues wipes the
marker too; each worker's main process looks for it every BROKER_CHECK_SECONDS. The first
process to find it missing sets it again (SET NX: exactly one wins) and has every unsent
planned delivery queued again. On a broker seen for the first time that re-queue finds
what was owed anyway; claims make a second task for a row harmless.

Only for a Redis broker: RabbitMQ's durable queues and persistent messages survive a restart.
"""

from __future__ import annotations

import logging
import uuid

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from notifier.pacing import redis_py_url

log = logging.getLogger(__name__)

MARKER_KEY = "notifier:broker-marker"


def is_redis(url: str) -> bool:
    return url.startswith(("redis://", "rediss://"))


class BrokerMarker:
    def __init__(self, broker_url: str, timeout_seconds: float = 2.0) -> None:
        self._redis = redis.Redis.from_url(
            redis_py_url(broker_url),
            socket_connect_timeout=timeout_seconds,
            socket_timeout=timeout_seconds,
            retry=Retry(NoBackoff(), 0),
        )

    def lost_and_claimed(self) -> bool:
        """True once per loss, to the one caller who must re-queue; False while the marker
        is there, while another caller re-queues, or while the broker does not answer."""
        try:
            if self._redis.exists(MARKER_KEY):
                return False
            return bool(self._redis.set(MARKER_KEY, uuid.uuid4().hex, nx=True))
        except redis.RedisError as error:
            log.debug("broker marker not checked: %s", error)
            return False

    def close(self) -> None:
        self._redis.close()
