"""Notice within seconds that the broker lost its queues (Redis restarted without persistence,
FLUSHALL, a failover to an empty replica).

A marker key lives in the broker next to the queues. Whatever wipes the queues wipes the
marker too; each worker's main process looks for it every BROKER_CHECK_SECONDS. The first
process to find it missing sets it again (SET NX: exactly one wins) and has every unsent
planned delivery queued again; claims make a second task for a row harmless. Articles whose
fan-out had not run are fanned out again only when the marker was seen before (a new broker
looks the same as a wiped one, and a first start must not announce an article twice).

Only for a Redis broker: RabbitMQ's durable queues and persistent messages survive a restart.
"""

from __future__ import annotations

import logging
import uuid

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from notifier.channels.pacing import redis_py_url

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
        self._seen = False  # this process has seen the marker in place

    def check(self) -> str | None:
        """ "lost" once per loss, to the one caller who must re-queue; "unknown" when the
        marker was missing at this process's first look (a new broker, or one wiped while
        no worker watched); None while it is there, while another caller re-queues, or while
        the broker does not answer."""
        try:
            if self._redis.exists(MARKER_KEY):
                self._seen = True
                return None
            if not self._redis.set(MARKER_KEY, uuid.uuid4().hex, nx=True):
                return None
        except redis.RedisError as error:
            log.debug("broker marker not checked: %s", error)
            return None
        return "lost" if self._seen else "unknown"

    def close(self) -> None:
        self._redis.close()
