"""The relay's Redis pub/sub transport: one publishing client and one listener task per process.

It only moves message texts (see :mod:`protocol.relay` for what they mean). The listener
reconnects with backoff while Redis is away; what is published meanwhile is logged as not relayed
and dropped, as python-socketio does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from redis.exceptions import RedisError

from .redis_clients import redis_from_url

__all__ = ["DEFAULT_CHANNEL", "RedisTransport"]

_log = logging.getLogger(__name__)

#: python-socketio's default channel: every process of one deployment must use the same
DEFAULT_CHANNEL = "socketio"
#: listener reconnection backoff: first delay, doubled on each failure up to the maximum
RECONNECT_DELAY = 0.1
RECONNECT_MAX_DELAY = 5.0
#: how long start() waits for the first subscription before serving without it (Redis down)
SUBSCRIBE_TIMEOUT = 2.0


class RedisTransport:
    """Publishes to and listens on one Redis pub/sub channel."""

    def __init__(
        self,
        url: str,
        channel: str = DEFAULT_CHANNEL,
        socket_timeout: float | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        self.channel = channel
        self.logger = logger or _log
        self._subscribed = asyncio.Event()
        self._redis = redis_from_url(url, socket_timeout=socket_timeout)
        self._listener: asyncio.Task[None] | None = None

    async def start(self, receive: Callable[[bytes], Awaitable[None]]) -> None:
        """Start the listener and wait up to SUBSCRIBE_TIMEOUT for its subscription, so a process
        that says it is listening already receives; without Redis it serves anyway."""
        self._listener = asyncio.get_running_loop().create_task(self._listen(receive))
        try:
            async with asyncio.timeout(SUBSCRIBE_TIMEOUT):
                await self._subscribed.wait()
        except TimeoutError:
            self.logger.warning(
                "message queue %s not subscribed yet; emits from other processes will arrive "
                "once it is",
                self.channel,
            )

    async def stop(self) -> None:
        """Stop the listener and close the Redis connections."""
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None
        self._subscribed.clear()
        await self._redis.aclose()

    async def publish(self, text: str) -> None:
        try:
            await self._redis.publish(self.channel, text)
        except (RedisError, OSError) as exc:
            self.logger.warning("message queue publish failed, not relayed: %s", exc)

    async def _listen(self, receive: Callable[[bytes], Awaitable[None]]) -> None:
        delay = RECONNECT_DELAY
        while True:
            try:
                async with self._redis.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(self.channel)
                    self._subscribed.set()
                    self.logger.info("message queue subscribed to %s", self.channel)
                    delay = RECONNECT_DELAY
                    async for message in pubsub.listen():
                        if message["type"] == "message":
                            await receive(message["data"])
            except (RedisError, OSError) as exc:
                self.logger.warning(
                    "message queue unavailable (%s); resubscribing in %.1f s", exc, delay
                )
            self._subscribed.clear()
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX_DELAY)
