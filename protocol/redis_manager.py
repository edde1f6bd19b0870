"""Scale-out over Redis pub/sub, speaking python-socketio's ``AsyncRedisManager`` JSON messages.

Several rollcall processes (and python-socketio servers, and write-only
``socketio.AsyncRedisManager`` emitters in other services) share one Redis channel. Every emit to a
room or to everyone is delivered locally and published; each process applies what the others
publish to its own sockets. Room changes and disconnects for a sid that lives elsewhere are
published for its process to apply. The message format is python-socketio's (5.15.1 and later):

    {"method": "emit", "event", "data": [args], "binary", "namespace", "room", "skip_sid",
     "callback": null | [sid, namespace, id], "host_id"}
    {"method": "disconnect" | "enter_room" | "leave_room", "sid", "namespace", "room"?, "host_id"}
    {"method": "close_room", "room", "namespace", "host_id"}
    {"method": "callback", "host_id" (of the asker), "sid", "namespace", "id", "args"}

Only JSON is ever decoded (python-socketio's old pickle format is refused, never unpickled).
Acks stay local: ``emit(callback=...)`` and ``call()`` need a sid of this process, but an ack that
another process asks for (a ``callback`` triple) is answered over the channel.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from .packet import ROOT_NAMESPACE
from .server import Server

__all__ = ["DEFAULT_CHANNEL", "RedisManager", "RelayError", "RelayedServer"]

_log = logging.getLogger("protocol.redis_manager")

#: python-socketio's default channel: every process of one deployment must use the same
DEFAULT_CHANNEL = "socketio"
#: listener reconnection backoff: first delay, doubled on each failure up to the maximum
RECONNECT_DELAY = 0.1
RECONNECT_MAX_DELAY = 5.0
#: how long start() waits for the first subscription before serving without it (Redis down)
SUBSCRIBE_TIMEOUT = 2.0
_PLACEHOLDER = "_placeholder"
_COMPACT = (",", ":")


class RelayError(ValueError):
    """A message on the channel that is not a valid python-socketio manager message."""


class _HasBinary(Exception):
    """Raised from inside the JSON encoder on the first bytes value: the message needs
    python-socketio's binary form (placeholders plus base64 attachments)."""


def _refuse_binary(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        raise _HasBinary
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _deconstruct(value: Any, attachments: list[bytes]) -> Any:
    """Bytes replaced by ``{"_placeholder": true, "num": n}``, as python-socketio's Packet does."""
    if isinstance(value, bytes | bytearray | memoryview):
        attachments.append(bytes(value))
        return {_PLACEHOLDER: True, "num": len(attachments) - 1}
    if isinstance(value, list | tuple):
        return [_deconstruct(item, attachments) for item in value]
    if isinstance(value, dict):
        return {key: _deconstruct(item, attachments) for key, item in value.items()}
    return value


def _reconstruct(value: Any, attachments: list[bytes]) -> Any:
    """The inverse of :func:`_deconstruct`; a placeholder out of range is a RelayError."""
    if isinstance(value, list):
        return [_reconstruct(item, attachments) for item in value]
    if isinstance(value, dict):
        if value.get(_PLACEHOLDER) is True and "num" in value:
            num = value["num"]
            if type(num) is not int or not 0 <= num < len(attachments):
                raise RelayError(f"binary placeholder {num!r} out of range")
            return attachments[num]
        return {key: _reconstruct(item, attachments) for key, item in value.items()}
    return value


def encode_emit(
    event: str,
    args: list[Any],
    namespace: str,
    room: str | None,
    skip_sid: str | list[str] | None,
    host_id: str,
) -> str:
    """An ``emit`` message as python-socketio's AsyncPubSubManager publishes it (without an ack:
    acks this process asks for stay local)."""
    message: dict[str, Any] = {
        "method": "emit",
        "event": event,
        "data": args,
        "binary": False,
        "namespace": namespace,
        "room": room,
        "skip_sid": skip_sid,
        "callback": None,
        "host_id": host_id,
    }
    try:
        return json.dumps(message, separators=_COMPACT, default=_refuse_binary)
    except _HasBinary:
        attachments: list[bytes] = []
        data = _deconstruct(args, attachments)
        message["data"] = [data, *(base64.b64encode(a).decode() for a in attachments)]
        message["binary"] = True
        return json.dumps(message, separators=_COMPACT)


def decode_args(message: dict[str, Any]) -> list[Any]:
    """The emit's arguments, binary attachments restored; python-socketio sends ``None`` (no
    data) as ``[null]``, which is no argument."""
    data = message.get("data")
    if not isinstance(data, list):
        raise RelayError("emit data is not a list")
    if message.get("binary"):
        if not data or not all(isinstance(a, str) for a in data[1:]):
            raise RelayError("binary emit without its base64 attachments")
        try:
            attachments = [base64.b64decode(a, validate=True) for a in data[1:]]
        except binascii.Error as exc:
            raise RelayError(f"bad base64 attachment: {exc}") from None
        try:
            data = _reconstruct(data[0], attachments)
        except RecursionError:
            raise RelayError("binary emit nested too deep") from None
        if not isinstance(data, list):
            raise RelayError("binary emit data is not a list")
    if len(data) == 1 and data[0] is None:
        return []
    return data


def parse(raw: bytes | str) -> dict[str, Any]:
    """One channel message as a dict with a string ``method``; anything else is a RelayError."""
    try:
        message = json.loads(raw)
    except (ValueError, RecursionError):
        raise RelayError("not JSON (python-socketio's pickle format is never decoded)") from None
    if not isinstance(message, dict) or not isinstance(message.get("method"), str):
        raise RelayError("not an object with a method")
    namespace = message.get("namespace")
    if namespace is None:
        message["namespace"] = ROOT_NAMESPACE
    elif not isinstance(namespace, str):
        raise RelayError("namespace is not a string")
    for key in ("sid", "room"):
        if not isinstance(message.setdefault(key, None), str | None):
            raise RelayError(f"{key} is not a string")
    return message


class RelayedServer(Server):
    """A :class:`Server` whose emits, room changes and disconnects also reach the sockets of the
    other processes on the channel. A separate class, so a server without a message queue runs
    the plain methods with nothing added to its emit path."""

    def __init__(self, manager: RedisManager, **options: Any) -> None:
        super().__init__(**options)
        self.manager = manager
        manager.server = self

    async def emit(
        self,
        event: str,
        data: Any = None,
        to: str | None = None,
        room: str | None = None,
        skip_sid: str | Iterable[str] | None = None,
        namespace: str = ROOT_NAMESPACE,
        callback: Callable[..., Any] | None = None,
    ) -> None:
        """As :meth:`Server.emit`; published unless it targets one sid of this process (or asks
        for an ack, which only a sid of this process can give)."""
        target = to if to is not None else room
        await super().emit(event, data, target, None, skip_sid, namespace, callback)
        if callback is None and (target is None or not self.is_connected(target, namespace)):
            skip = skip_sid if skip_sid is None or isinstance(skip_sid, str) else list(skip_sid)
            await self.manager.publish_emit(event, data, namespace, target, skip)

    async def enter_room(self, sid: str, room: str, namespace: str = ROOT_NAMESPACE) -> None:
        """Local sids change at once (without yielding to the loop); others are published."""
        if self.is_connected(sid, namespace):
            await super().enter_room(sid, room, namespace)
        else:
            await self.manager.publish(
                {"method": "enter_room", "sid": sid, "room": room, "namespace": namespace}
            )

    async def leave_room(self, sid: str, room: str, namespace: str = ROOT_NAMESPACE) -> None:
        if self.is_connected(sid, namespace):
            await super().leave_room(sid, room, namespace)
        else:
            await self.manager.publish(
                {"method": "leave_room", "sid": sid, "room": room, "namespace": namespace}
            )

    async def close_room(self, room: str, namespace: str = ROOT_NAMESPACE) -> None:
        await super().close_room(room, namespace)
        await self.manager.publish({"method": "close_room", "room": room, "namespace": namespace})

    async def disconnect(self, sid: str, namespace: str = ROOT_NAMESPACE) -> None:
        if self.is_connected(sid, namespace):
            await super().disconnect(sid, namespace)
        else:
            await self.manager.publish({"method": "disconnect", "sid": sid, "namespace": namespace})

    # -- applying what other processes published ------------------------------------------

    async def apply(self, message: dict[str, Any]) -> None:
        """Apply one message from another process to this process's sockets only."""
        method = message["method"]
        namespace = message["namespace"]
        if namespace not in self._rooms:
            return
        if method == "emit":
            await self._apply_emit(message)
        elif method == "disconnect":
            await Server.disconnect(self, message["sid"], namespace)
        elif method in ("enter_room", "leave_room"):
            sid, room = message["sid"], message["room"]
            if room is not None and self.is_connected(sid, namespace):
                change = Server.enter_room if method == "enter_room" else Server.leave_room
                await change(self, sid, room, namespace)
        elif method == "close_room" and message["room"] is not None:
            await Server.close_room(self, message["room"], namespace)

    async def _apply_emit(self, message: dict[str, Any]) -> None:
        event = message.get("event")
        if not isinstance(event, str):
            raise RelayError("emit without an event name")
        args = decode_args(message)
        skip_sid = message.get("skip_sid")
        if not (
            isinstance(skip_sid, str | None)
            or (isinstance(skip_sid, list) and all(isinstance(s, str) for s in skip_sid))
        ):
            raise RelayError("skip_sid is neither a sid nor a list of sids")
        namespace, room = message["namespace"], message["room"]
        remote_callback = message.get("callback")
        if remote_callback is None:
            await Server.emit(self, event, tuple(args), room, None, skip_sid, namespace)
            return
        if not (isinstance(remote_callback, list) and len(remote_callback) == 3):
            raise RelayError("callback is not [sid, namespace, id]")
        if room is None or not self.is_connected(room, namespace):
            return  # the sid that must ack lives on another process
        ack_sid, ack_namespace, ack_id = remote_callback
        asker = message.get("host_id")

        async def answer(*ack_args: Any) -> None:
            await self.manager.publish(
                {
                    "method": "callback",
                    "host_id": asker,
                    "sid": ack_sid,
                    "namespace": ack_namespace,
                    "id": ack_id,
                    "args": list(ack_args),
                },
                own_host_id=False,
            )

        await Server.emit(self, event, tuple(args), room, None, None, namespace, answer)


class RedisManager:
    """The Redis side: one publishing client and one listener task per process.

    The listener reconnects with backoff while Redis is away; emits made meanwhile reach this
    process's sockets and are logged as not relayed (as python-socketio does, they are not queued).
    """

    def __init__(
        self,
        url: str,
        channel: str = DEFAULT_CHANNEL,
        socket_timeout: float | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        self.url = url
        self.channel = channel
        self.host_id = uuid.uuid4().hex
        self.logger = logger or _log
        self.server: RelayedServer | None = None
        #: set while subscribed to the channel (tests and start() wait on it)
        self.subscribed = asyncio.Event()
        self._redis = aioredis.Redis.from_url(url, socket_timeout=socket_timeout)
        self._listener: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start the listener and wait up to SUBSCRIBE_TIMEOUT for its subscription, so a process
        that says it is listening already receives; without Redis it serves anyway."""
        if self.server is None:
            raise RuntimeError("RedisManager.start() before a RelayedServer was given it")
        self._listener = asyncio.get_running_loop().create_task(self._listen())
        try:
            async with asyncio.timeout(SUBSCRIBE_TIMEOUT):
                await self.subscribed.wait()
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
        self.subscribed.clear()
        await self._redis.aclose()

    async def publish(self, message: dict[str, Any], own_host_id: bool = True) -> None:
        """Publish one message (stamped with this process's host_id unless it carries another)."""
        if own_host_id:
            message["host_id"] = self.host_id
        await self._publish(json.dumps(message, separators=_COMPACT))

    async def publish_emit(
        self,
        event: str,
        data: Any,
        namespace: str,
        room: str | None,
        skip_sid: str | list[str] | None,
    ) -> None:
        args = list(data) if isinstance(data, tuple) else [data]
        await self._publish(encode_emit(event, args, namespace, room, skip_sid, self.host_id))

    async def _publish(self, text: str) -> None:
        try:
            await self._redis.publish(self.channel, text)
        except (RedisError, OSError) as exc:
            self.logger.warning("message queue publish failed, not relayed: %s", exc)

    async def _listen(self) -> None:
        delay = RECONNECT_DELAY
        while True:
            try:
                async with self._redis.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(self.channel)
                    self.subscribed.set()
                    self.logger.info("message queue subscribed to %s", self.channel)
                    delay = RECONNECT_DELAY
                    async for message in pubsub.listen():
                        if message["type"] == "message":
                            await self._handle(message["data"])
            except (RedisError, OSError) as exc:
                self.logger.warning(
                    "message queue unavailable (%s); resubscribing in %.1f s", exc, delay
                )
            self.subscribed.clear()
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX_DELAY)

    async def _handle(self, raw: bytes) -> None:
        assert self.server is not None
        try:
            message = parse(raw)
            if message["method"] == "callback":
                return  # acks this process asks for never leave it (see the module docstring)
            if message.get("host_id") == self.host_id:
                return
            await self.server.apply(message)
        except RelayError as exc:
            self.logger.warning("ignoring message queue message: %s", exc)
        except Exception:
            self.logger.exception("applying a message queue message failed")
