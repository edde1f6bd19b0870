"""The client manager: rooms and delivery for the sockets of one process.

:class:`~protocol.socketio_server.Server` hands every room and delivery operation to its manager, as
python-socketio's ``AsyncServer`` does to its ``client_manager``: the server owns sockets and the
wire, the manager decides who an emit reaches. :class:`Manager` keeps it all in this process; a
relaying manager (:mod:`protocol.relay`) extends it to the sockets of other processes, so the
server itself never changes with the deployment.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol

from .packet import ROOT_NAMESPACE, Packet, PacketType, encode
from .rooms import Rooms

__all__ = ["Host", "Manager", "NotAttached", "as_args"]


class NotAttached(RuntimeError):
    """A manager used before a :class:`~protocol.socketio_server.Server` was built with it."""


class Host(Protocol):
    """What a manager needs of the server it is attached to."""

    async def deliver(self, sid: str, frames: list[str | bytes]) -> None:
        """Send encoded frames to a socket of this process; a sid not here is ignored."""

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
        """The server's own emit: a relay asks a local sid for an ack through it."""

    async def disconnect(self, sid: str, namespace: str = ROOT_NAMESPACE) -> None:
        """The server's own disconnect: a relay applies another process's request through it."""


def as_args(data: Any) -> list[Any]:
    """An emit's ``data`` as event arguments: a tuple is several, None is none."""
    if data is None:
        return []
    if isinstance(data, tuple):
        return list(data)
    return [data]


class Manager:
    """Room membership and emits for the sockets of this process, namespace by namespace.

    Every socket is registered (:meth:`add_sid`) while it lives and is a room of its own. Room
    changes for a sid that is not registered here are ignored: a handler that enters a room after
    its client left must not leave a member behind that nothing removes.
    """

    def __init__(self) -> None:
        self._server: Host | None = None
        self._rooms: dict[str, Rooms] = {}

    def attach(self, server: Host) -> None:
        """Serve ``server``: the one place a manager learns of its server (``Server.__init__``
        calls it). A manager serves one server."""
        if self._server is not None and self._server is not server:
            raise ValueError("this manager already serves another Server")
        self._server = server

    @property
    def attached(self) -> bool:
        return self._server is not None

    @property
    def server(self) -> Host:
        """The server this manager is attached to."""
        if self._server is None:
            raise NotAttached("no Server was built with this manager")
        return self._server

    # -- the sockets of this process --------------------------------------------------------

    def add_namespace(self, namespace: str) -> None:
        self._rooms.setdefault(namespace, Rooms())

    def add_sid(self, sid: str, namespace: str) -> None:
        """Register a socket of this process (it enters the room named after itself)."""
        self._rooms[namespace].add_sid(sid)

    def remove_sid(self, sid: str, namespace: str) -> None:
        """Forget a socket of this process and every room it was in."""
        self._rooms[namespace].remove_sid(sid)

    def is_connected(self, sid: str, namespace: str) -> bool:
        """Whether ``sid`` is a socket of this process in ``namespace`` (its connect handler may
        still be running)."""
        rooms = self._rooms.get(namespace)
        return rooms is not None and rooms.has_sid(sid)

    def rooms(self, sid: str, namespace: str) -> list[str]:
        return self._rooms[namespace].rooms_of(sid)

    # -- room and delivery operations (a relaying manager extends each) ---------------------

    async def enter_room(self, sid: str, room: str, namespace: str) -> None:
        rooms = self._rooms[namespace]
        if rooms.has_sid(sid):
            rooms.enter(sid, room)

    async def leave_room(self, sid: str, room: str, namespace: str) -> None:
        self._rooms[namespace].leave(sid, room)

    async def close_room(self, room: str, namespace: str) -> None:
        rooms = self._rooms.get(namespace)
        if rooms is not None:
            rooms.close(room)

    async def emit(
        self,
        event: str,
        data: Any,
        namespace: str,
        room: str | None = None,
        skip_sid: str | Iterable[str] | None = None,
    ) -> None:
        """Send an event to the sockets of ``room`` (a sid or a room name), or of the whole
        namespace when ``room`` is None, but not to ``skip_sid``. Encoded once for all."""
        rooms = self._rooms.get(namespace)
        if rooms is None:
            return
        frames = encode(Packet(PacketType.EVENT, namespace, [event, *as_args(data)]))
        recipients = rooms.all_sids() if room is None else rooms.members(room)
        if skip_sid is None:
            skip: Iterable[str] = ()
        else:
            skip = {skip_sid} if isinstance(skip_sid, str) else set(skip_sid)
        deliver = self.server.deliver
        for sid in list(recipients):
            if sid not in skip:
                await deliver(sid, frames)

    async def can_disconnect(self, sid: str, namespace: str) -> bool:
        """Whether the server should disconnect ``sid`` itself: it is a socket of this process.
        A relaying manager asks the sid's own process otherwise."""
        return self.is_connected(sid, namespace)
