"""The relaying client manager: rooms and emits that reach the sockets of every process.

python-socketio's ``AsyncPubSubManager``, over any pub/sub :class:`Transport`. Every emit to a
room or to everyone is delivered here and published; each process applies what the others
publish to its own sockets. Room changes and disconnects for a sid that lives elsewhere are
published for its process to apply. Acks stay local: ``emit(callback=...)`` and ``call()`` need a
sid of this process, but an ack another process asks for (the ``callback`` of its emit) is answered
over the channel. The messages are :mod:`protocol.relay_codec`'s; moving them is the transport's.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol

from .manager import Manager, NotAttached
from .relay_codec import (
    ENTER_ROOM,
    LEAVE_ROOM,
    Callback,
    CloseRoom,
    Disconnect,
    Emit,
    Message,
    RelayError,
    RoomChange,
    decode,
    emit_data,
    encode,
)

__all__ = ["RelayManager", "Transport"]

_log = logging.getLogger(__name__)


class Transport(Protocol):
    """A pub/sub channel shared by every process: it only moves message texts."""

    async def start(self, receive: Callable[[bytes], Awaitable[None]]) -> None:
        """Subscribe, and from then on pass each message published by anyone to ``receive``."""

    async def stop(self) -> None:
        """Unsubscribe and release the connections."""

    async def publish(self, text: str) -> None:
        """Publish to every process; while the channel is unavailable, log and drop (nothing is
        queued for later, as in python-socketio)."""


class RelayManager(Manager):
    """A :class:`~protocol.manager.Manager` whose room and delivery operations also reach the
    sockets of the other processes on ``transport``. Start it once its server is built."""

    def __init__(self, transport: Transport, logger: logging.Logger | None = None) -> None:
        super().__init__()
        self.transport = transport
        self.host_id = uuid.uuid4().hex
        self.logger = logger or _log

    async def start(self) -> None:
        """Start receiving what other processes publish (applied through the server, so one must
        have been built with this manager)."""
        if not self.attached:
            raise NotAttached("start() before a Server was built with this manager")
        await self.transport.start(self.receive)

    async def stop(self) -> None:
        await self.transport.stop()

    # -- what this process does, relayed ------------------------------------------------------

    async def emit(
        self,
        event: str,
        data: Any,
        namespace: str,
        room: str | None = None,
        skip_sid: str | Iterable[str] | None = None,
    ) -> None:
        """Delivered here, and published unless it targets one sid of this process."""
        await super().emit(event, data, namespace, room, skip_sid)
        if room is None or not self.is_connected(room, namespace):
            skip = skip_sid if skip_sid is None or isinstance(skip_sid, str) else list(skip_sid)
            await self._publish(
                Emit(event, emit_data(data), namespace, room, skip, None, self.host_id)
            )

    async def enter_room(self, sid: str, room: str, namespace: str) -> None:
        """A sid of this process enters at once (without yielding to the loop); any other sid's
        process is asked to."""
        if self.is_connected(sid, namespace):
            await super().enter_room(sid, room, namespace)
        else:
            await self._publish(RoomChange(ENTER_ROOM, sid, room, namespace, self.host_id))

    async def leave_room(self, sid: str, room: str, namespace: str) -> None:
        if self.is_connected(sid, namespace):
            await super().leave_room(sid, room, namespace)
        else:
            await self._publish(RoomChange(LEAVE_ROOM, sid, room, namespace, self.host_id))

    async def close_room(self, room: str, namespace: str) -> None:
        await super().close_room(room, namespace)
        await self._publish(CloseRoom(room, namespace, self.host_id))

    async def can_disconnect(self, sid: str, namespace: str) -> bool:
        if self.is_connected(sid, namespace):
            return True
        await self._publish(Disconnect(sid, namespace, self.host_id))
        return False

    async def _publish(self, message: Message) -> None:
        await self.transport.publish(encode(message))

    # -- what other processes do, applied to this process's sockets --------------------------

    async def receive(self, raw: bytes) -> None:
        """Apply one message from the channel; a malformed one is logged and dropped."""
        try:
            message = decode(raw)
            # an ack this process asked for never left it (see the module docstring), and what
            # this process published it has applied already
            if message is None or isinstance(message, Callback):
                return
            if message.host_id == self.host_id:
                return
            await self._apply(message)
        except RelayError as exc:
            self.logger.warning("ignoring message queue message: %s", exc)
        except Exception:
            self.logger.exception("applying a message queue message failed")

    async def _apply(self, message: Emit | Disconnect | RoomChange | CloseRoom) -> None:
        namespace = message.namespace
        if isinstance(message, Emit):
            await self._apply_emit(message)
        elif isinstance(message, Disconnect):
            if self.is_connected(message.sid, namespace):
                await self.server.disconnect(message.sid, namespace)
        elif isinstance(message, RoomChange):
            if self.is_connected(message.sid, namespace):
                change = super().enter_room if message.method == ENTER_ROOM else super().leave_room
                await change(message.sid, message.room, namespace)
        else:
            await super().close_room(message.room, namespace)

    async def _apply_emit(self, message: Emit) -> None:
        namespace, room = message.namespace, message.room
        args = tuple(message.args)
        if message.callback is None:
            await super().emit(message.event, args, namespace, room, message.skip_sid)
            return
        if room is None or not self.is_connected(room, namespace):
            return  # the sid that must ack lives on another process
        ack_sid, ack_namespace, ack_id = message.callback
        asker = message.host_id

        async def answer(*ack_args: Any) -> None:
            await self._publish(Callback(asker, ack_sid, ack_namespace, ack_id, list(ack_args)))

        await self.server.emit(message.event, args, to=room, namespace=namespace, callback=answer)
