"""kombu's Redis transport, with one failure on broker loss turned into a connection error.

When Redis goes away while a Celery worker waits for messages, the worker's reconnect path
tears the connection's transport down before the channel is closed; closing the channel
then tries to put unacknowledged messages back through a connection pool it can no longer
build and raises AttributeError. Celery treats that as unrecoverable and the worker exits
instead of reconnecting (seen by the fault soak, tests/soak). Here that case raises Redis's
ConnectionError, which kombu and Celery ignore while reconnecting. Nothing is lost by
skipping the restore: Redis is unreachable anyway, its visibility timeout restores what is
still there, and the database's dirty marks (the sweeper) cover what is not.
"""

from __future__ import annotations

from typing import Any

from kombu.transport import redis as kombu_redis
from redis.exceptions import ConnectionError as RedisConnectionError


class Channel(kombu_redis.Channel):
    _publish_client = None

    def _create_client(self, asynchronous: bool = False) -> Any:
        # kombu builds a new redis.Redis for every publish (half the CPU of a publish, most
        # of it filling the client's response-callback table); one client per channel and
        # pool does the same job. Clients share the pool, which is thread-safe.
        if asynchronous:
            return super()._create_client(asynchronous=True)
        client = self._publish_client
        if client is None or client.connection_pool is not self.pool:
            client = self._publish_client = super()._create_client()
        return client

    def _connparams(self, asynchronous: bool = False) -> dict:
        if self.connection.client is None:
            raise RedisConnectionError("the broker connection is already closed")
        return super()._connparams(asynchronous=asynchronous)


class Transport(kombu_redis.Transport):
    Channel = Channel


# For Celery's `broker_transport` setting (the URL still says where Redis is).
TRANSPORT_PATH = f"{__name__}:Transport"
