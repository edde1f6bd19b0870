"""A session's send queue (``Outbox``), on a lean unbounded FIFO with asyncio.Queue's interface.

python-engineio gives each session a queue of ``create_queue`` (its public hook) for its output:
an empty asyncio.Queue allocates three deques and an Event with a fourth (~3 KB), for every idle
session's whole life. ``LeanQueue`` allocates its buffer and waiter list only while they hold
something (docs/benchmarks.md, issue 15's heap profile): put never waits, get waits in FIFO order
of the getters.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any, Protocol

from engineio import packet as eio_packet

from .session import Poll, Session

#: What a queued packet without a text or binary payload (OPEN, PING, NOOP...) is counted as.
PACKET_OVERHEAD = 64


def _wake_first(waiters: list[asyncio.Future[None]] | None) -> None:
    """Wake the first waiter not yet done (cancelled ones are skipped and dropped)."""
    while waiters:
        waiter = waiters.pop(0)
        if not waiter.done():
            waiter.set_result(None)
            return


class LeanQueue:
    """An unbounded asyncio queue that costs ~100 bytes while empty and nobody waits on it."""

    __slots__ = ("_getters", "_items")

    def __init__(self) -> None:
        self._items: deque[Any] | None = None
        self._getters: list[asyncio.Future[None]] | None = None

    def qsize(self) -> int:
        return len(self._items) if self._items else 0

    def empty(self) -> bool:
        return not self._items

    def _put(self, item: Any) -> None:
        if self._items is None:
            self._items = deque()
        self._items.append(item)

    def _get(self) -> Any:
        items = self._items
        assert items  # callers check empty() first
        item = items.popleft()
        if not items:
            self._items = None
        return item

    def put_nowait(self, item: Any) -> None:
        self._put(item)
        _wake_first(self._getters)
        if not self._getters:
            self._getters = None

    async def put(self, item: Any) -> None:
        self.put_nowait(item)

    def get_nowait(self) -> Any:
        if self.empty():
            raise asyncio.QueueEmpty
        return self._get()

    async def get(self) -> Any:
        while self.empty():
            getter = asyncio.get_running_loop().create_future()
            if self._getters is None:
                self._getters = []
            self._getters.append(getter)
            try:
                await getter
            except BaseException:
                getter.cancel()
                getters = self._getters
                if getters is not None and getter in getters:
                    getters.remove(getter)
                if not self.empty() and not getter.cancelled():
                    _wake_first(self._getters)  # pass the wake-up on to the next getter
                raise
        return self._get()


class Host(Protocol):
    """What an Outbox needs of its server (``EngineServer``)."""

    ping_interval: float
    ping_interval_grace_period: float
    ping_timeout: float
    max_session_output: int

    def outbox_opened(self, outbox: Outbox) -> None:
        """python-engineio queued a new session's OPEN packet: its sid is ``outbox.sid``."""

    def output_overflowed(self, sid: str) -> None:
        """A session's queued output passed ``max_session_output``: close it."""


class Writer(Protocol):
    """A session's open WebSocket, once it carries the session (``WebSocketTransport``)."""

    def write(self, pkt: eio_packet.Packet) -> bool:
        """Write `pkt` now; False if the last write is not taken yet (then it is held)."""


def _queued_size(item: eio_packet.Packet | None) -> int:
    """What a queued packet costs the server: its payload's length (characters or bytes)."""
    if item is None:
        return 0
    data = item.data
    return len(data) if isinstance(data, str | bytes) else PACKET_OVERHEAD


class Outbox(LeanQueue):
    """A session's send queue, where python-engineio and rollcall put every packet for the
    client: it writes the handshake intervals in exact milliseconds, bounds what it holds, hands
    each packet straight to the WebSocket once one carries the session, and answers a poll with a
    NOOP while an upgrade is under way.

    python-engineio computes ``int(seconds) * 1000``, so 0.3 s would be announced as 0 ms. And it
    queues without limit for a client that never polls (or, on WebSocket, that never reads): past
    ``max_session_output`` the backlog is dropped, nothing but the CLOSE is queued any more, and
    the server closes the session. rollcall never waits for a session's output to drain, so
    ``join`` returns at once (python-engineio's ``disconnect`` would wait for the client to poll).
    """

    __slots__ = ("_server", "overflowed", "session", "sid", "size", "writer")

    def __init__(self, server: Host) -> None:
        super().__init__()
        self._server = server
        #: the Engine.IO sid, read from the OPEN packet python-engineio queues first
        self.sid: str | None = None
        #: the session's state, once the server registered it (``EngineServer.session_opened``)
        self.session: Session | None = None
        #: the WebSocket that carries the session, once one does
        self.writer: Writer | None = None
        #: payload characters or bytes held now
        self.size = 0
        self.overflowed = False

    def put_nowait(self, item: Any) -> None:
        if item is not None:
            kind = item.packet_type
            if kind == eio_packet.OPEN:
                server = self._server
                item.data["pingInterval"] = round(
                    (server.ping_interval + server.ping_interval_grace_period) * 1000
                )
                item.data["pingTimeout"] = round(server.ping_timeout * 1000)
                self.sid = item.data["sid"]
                server.outbox_opened(self)
            elif self.overflowed and kind != eio_packet.CLOSE:
                return  # the session is being closed: hold nothing more for it
            writer = self.writer
            if writer is not None and writer.write(item):
                return
        self.hold(item)

    def hold(self, item: Any) -> None:
        """Keep `item` until a poll or the WebSocket takes it."""
        super().put_nowait(item)
        if self.size > self._server.max_session_output and not self.overflowed:
            self._overflow()

    def _upgrading(self) -> bool:
        session = self.session
        return session is not None and session.poll() is Poll.NOOP

    async def get(self) -> Any:
        if self._upgrading():  # what is held goes over the WebSocket once it is upgraded
            return eio_packet.Packet(eio_packet.NOOP)
        return await super().get()

    def get_nowait(self) -> Any:
        if self._upgrading():
            raise asyncio.QueueEmpty
        return super().get_nowait()

    def task_done(self) -> None:
        """Nothing waits for the queue to drain (see ``join``)."""

    async def join(self) -> None:
        """Return at once: rollcall never waits for a session's output to drain."""

    def _put(self, item: Any) -> None:
        super()._put(item)
        self.size += _queued_size(item)

    def _get(self) -> Any:
        item = super()._get()
        self.size -= _queued_size(item)
        return item

    def _overflow(self) -> None:
        sid = self.sid
        if sid is None:
            return
        self.overflowed = True
        self._items = None
        self.size = 0
        self._server.output_overflowed(sid)
