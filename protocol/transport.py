"""An Engine.IO session's open WebSocket, as Tornado serves it: the glue between Tornado's
``on_message`` and write, and the session logic of protocol/session.py.

python-engineio's own transport runs a reader and a writer coroutine for each WebSocket and
passes every frame through a queue to each: two more loop wake-ups, a timer and a task per
message, and with the request's coroutines they held ~10 KB per idle connection (measured in
docs/benchmarks.md, issue 15's third round). Here frames go from ``on_message`` straight to the
session, and packets from the session's Outbox straight to the connection. What python-engineio's
transport guaranteed is kept: frames are handled one after another in arrival order (a frame
whose handling has to wait holds back the ones after it), a client that does not read makes the
session's bounded Outbox grow, not Tornado's write buffer, and the session closes when the
connection does.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol

import tornado.iostream
import tornado.websocket
from engineio import packet as eio_packet

from . import eager
from .queues import Outbox
from .session import PROBE_ANSWER, Received, Session

# RFC 6455
TEXT_OPCODE = 0x1
BINARY_OPCODE = 0x2
WS_PROTOCOL_ERROR = 1002

_log = logging.getLogger(__name__)


class Host(Protocol):
    """What a WebSocket session needs of its server (``EngineServer``)."""

    max_http_buffer_size: int
    #: tasks the server ends at shutdown (a frame whose handling waits runs in one)
    background_tasks: set[asyncio.Task[Any]]
    #: the Socket.IO layer's handler of a MESSAGE's payload
    on_message: Callable[[str, str | bytes], Awaitable[Any]]
    #: python-engineio's disconnect reasons
    reason: Any

    def pong(self, sid: str) -> None:
        """The client answered a PING."""

    async def close_session(self, sid: str, reason: str) -> None:
        """End the session, naming why."""

    def end_session(self, sid: str, reason: str) -> None:
        """End the session, naming why, soon: its client's side has ended."""


class WebSocketTransport:
    """One session's open WebSocket: frames in through ``feed``, packets out through ``write``."""

    __slots__ = (
        "_backlog", "_closed", "_compressing", "_ending", "_unflushed", "handler", "outbox",
        "server", "session",
    )

    def __init__(
        self,
        server: Host,
        session: Session,
        outbox: Outbox,
        handler: tornado.websocket.WebSocketHandler,
        compressing: bool,
    ) -> None:
        self.server = server
        self.session = session
        self.outbox = outbox
        self.handler = handler
        self._compressing = compressing
        #: frames that came while an earlier one was still being handled, in arrival order
        self._backlog: collections.deque[str | bytes | None] | None = None
        #: the last write, while the client has not taken it: later packets wait in the Outbox
        self._unflushed: asyncio.Future[None] | None = None
        #: set once the session's CLOSE is sent: the connection ends when it is written
        self._ending = False
        #: set once rollcall closed the connection: nothing more is written to it
        self._closed = False

    def start(self) -> None:
        """A new session's WebSocket carries it at once: write what it queued (its OPEN)."""
        if not self.session.upgrading:
            self._carry()

    def _carry(self) -> None:
        self.outbox.writer = self
        self._flush()

    # -- from the client ----------------------------------------------------------------------

    def feed(self, frame: str | bytes | None) -> None:
        """Handle a frame from the client (None: the connection ended), in arrival order."""
        if self._backlog is not None:
            self._backlog.append(frame)
        else:
            self._handle(frame)

    def _handle(self, frame: str | bytes | None) -> None:
        work = self._receive(frame)
        if work is None:
            return
        task = eager.start(work, self.server.background_tasks)
        if task is not None:  # it waits: the frames after it wait for it
            self._backlog = collections.deque()
            task.add_done_callback(self._resume)

    def _resume(self, _: asyncio.Task[Any]) -> None:
        backlog = self._backlog
        self._backlog = None
        while backlog:
            self._handle(backlog.popleft())
            if self._backlog is not None:  # waiting again
                self._backlog.extend(backlog)
                return

    def _receive(self, frame: str | bytes | None) -> Coroutine[Any, Any, Any] | None:
        """Act on what the session says a frame does; a coroutine when that has to run."""
        server, session = self.server, self.session
        if frame is None or len(frame) > server.max_http_buffer_size:
            self.close()
            if session.websocket_closed():
                server.end_session(session.sid, server.reason.TRANSPORT_CLOSE)
            return None
        received = session.frame(frame)
        if received is Received.MESSAGE:
            return self._message(frame if isinstance(frame, bytes) else frame[1:])
        if received is Received.PONG:
            server.pong(session.sid)
        elif received is Received.CLOSE:
            return server.close_session(session.sid, server.reason.CLIENT_DISCONNECT)
        elif received is Received.PROBED:
            self._send_text(PROBE_ANSWER)
            self.outbox.put_nowait(eio_packet.Packet(eio_packet.NOOP))  # ends a pending poll
        elif received is Received.UPGRADED:
            self._carry()
        elif received is Received.UPGRADE_FAILED:
            self.close()
        elif received is Received.INVALID:
            _log.info("closing a WebSocket that sent %r, not an Engine.IO packet", frame[:16])
            self.close(WS_PROTOCOL_ERROR, "invalid Engine.IO packet")
            if session.websocket_closed():
                return server.close_session(session.sid, server.reason.TRANSPORT_CLOSE)
        return None

    async def _message(self, data: str | bytes) -> None:
        try:
            await self.server.on_message(self.session.sid, data)
        except Exception:
            _log.exception("Unknown receive error")

    # -- to the client ------------------------------------------------------------------------

    def write(self, pkt: eio_packet.Packet) -> bool:
        """Write `pkt` now; False if the client has not taken the last write (the Outbox
        holds it until then)."""
        if self._unflushed is not None:
            return False
        self._write(pkt)
        return True

    def end(self) -> None:
        """Close the connection once what was sent before is written."""
        self._ending = True
        if self._unflushed is None:
            self.close()

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        """Close the connection now; nothing more is written to it."""
        self._closed = True
        self.handler.close(code, reason)

    def _write(self, pkt: eio_packet.Packet) -> None:
        kind = pkt.packet_type
        if kind == eio_packet.NOOP or self._closed:
            return  # a NOOP ends the last poll of an upgrade: no poll is left to end
        written = self._send_text(pkt.encode())
        if kind == eio_packet.CLOSE:
            self._ending = True
        if written is not None and not written.done():
            self._unflushed = written
            written.add_done_callback(self._flushed)
        elif self._ending:
            self.close()

    def _send_text(self, message: str | bytes) -> asyncio.Future[None] | None:
        """Write one message; its future is done once the client took it (None: gone)."""
        try:
            return _write_message(self.handler, message, self._compressing)
        except (tornado.websocket.WebSocketClosedError, tornado.iostream.StreamClosedError):
            return None  # gone: on_close ends the session

    def _flushed(self, written: asyncio.Future[None]) -> None:
        self._unflushed = None
        if written.cancelled() or written.exception() is not None:
            return  # the connection closed: on_close ends the session
        self._flush()

    def _flush(self) -> None:
        """Write what the Outbox holds, until a write has to wait for the client again."""
        outbox = self.outbox
        while self._unflushed is None and not outbox.empty():
            pkt = outbox.get_nowait()
            if pkt is None:
                self._ending = True
                break
            self._write(pkt)
        if self._ending and self._unflushed is None:
            self.close()


def _write_message(
    handler: tornado.websocket.WebSocketHandler, message: str | bytes, compressing: bool
) -> asyncio.Future[None]:
    """Write one message to a WebSocket; done once the client took it.

    Tornado's ``write_message`` wraps each write's future in a coroutine and a task of its own
    (only to turn a closed stream's error into ``WebSocketClosedError``): a task per message
    sent. Without compression this writes the same frame with the same method
    ``write_message`` uses, ``WebSocketProtocol._write_frame`` (a Tornado internal: see
    docs/architecture.md), minus that task; a compressing connection takes Tornado's own path."""
    connection = handler.ws_connection
    if connection is None:
        raise tornado.websocket.WebSocketClosedError()
    if compressing:
        return handler.write_message(message, binary=isinstance(message, bytes))
    if isinstance(message, bytes):
        return connection._write_frame(True, BINARY_OPCODE, message)
    return connection._write_frame(True, TEXT_OPCODE, message.encode())
