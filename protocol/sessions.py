"""An Engine.IO session as rollcall runs it on python-engineio: a bounded send queue, waits
without a task of their own, and, once a WebSocket is open, a transport without python-engineio's
reader and writer. protocol/engine.py (the server and its Tornado handler) makes every session
one of these; see docs/protocol.md for why each differs from python-engineio 4.15.
"""

from __future__ import annotations

import asyncio
import collections
import time
from typing import Any, Protocol

import tornado.websocket
from engineio import exceptions as eio_exceptions
from engineio import packet as eio_packet
from engineio.async_drivers import tornado as eio_tornado
from engineio.async_socket import AsyncSocket

from . import eager
from .queues import LeanQueue

MESSAGE_TYPE = "4"
#: The only payload a non-MESSAGE packet from a client carries (the upgrade's "2probe").
PROBE = "probe"
NOOP_FRAME = "6"
#: What a queued packet without a text or binary payload (OPEN, PING, NOOP...) is counted as.
PACKET_OVERHEAD = 64
# RFC 6455 data frame opcodes
TEXT_OPCODE = 0x1
BINARY_OPCODE = 0x2


class Host(Protocol):
    """What a session needs of its server beyond python-engineio's (``EngineServer``)."""

    ping_interval: float
    ping_interval_grace_period: float
    ping_timeout: float
    max_http_buffer_size: int
    max_session_output: int
    #: tasks the server ends at shutdown (a frame whose handling waits runs in one)
    background_tasks: set[asyncio.Task[Any]]

    def output_overflowed(self, sid: str) -> None:
        """A session's queued output passed ``max_session_output``: close it."""

    def websocket_ended(
        self, socket: AsyncSocket, handler: tornado.websocket.WebSocketHandler
    ) -> None:
        """A session's WebSocket and the session itself are both closed: forget them."""


def _queued_size(item: eio_packet.Packet | None) -> int:
    """What a queued packet costs the server: its payload's length (characters or bytes)."""
    if item is None:
        return 0
    data = item.data
    return len(data) if isinstance(data, str | bytes) else PACKET_OVERHEAD


class Outbox(LeanQueue):
    """A socket's send queue: writes the handshake intervals in exact milliseconds, and bounds
    what it holds (a LeanQueue: an idle session's empty queue costs next to nothing).

    python-engineio computes ``int(seconds) * 1000``, so 0.3 s would be announced as 0 ms. And it
    queues without limit for a client that never polls (or, on WebSocket, that never reads; see
    ``WebSocketTransport.send``): past ``max_session_output`` the backlog is dropped, nothing
    but the CLOSE is queued any more, and the server closes the session.
    """

    __slots__ = ("_server", "overflowed", "sid", "size")

    def __init__(self, server: Host) -> None:
        super().__init__()
        self._server = server
        #: the Engine.IO sid, known once the session opens (``EngineServer.session_opened``)
        self.sid: str | None = None
        #: payload characters or bytes queued now
        self.size = 0
        self.overflowed = False

    def put_nowait(self, item: Any) -> None:
        if item is not None:
            if item.packet_type == eio_packet.OPEN:
                server = self._server
                item.data["pingInterval"] = round(
                    (server.ping_interval + server.ping_interval_grace_period) * 1000
                )
                item.data["pingTimeout"] = round(server.ping_timeout * 1000)
            elif self.overflowed and item.packet_type != eio_packet.CLOSE:
                return  # the session is being closed: hold nothing more for it
        super().put_nowait(item)
        if self.size > self._server.max_session_output and not self.overflowed:
            self._overflow()

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
        while not self.empty():
            self.get_nowait()
            self.task_done()
        self._server.output_overflowed(sid)


class LeanSocket(AsyncSocket):
    """python-engineio's session, waiting without a task of its own per wait, and talking over
    a WebSocket without a reader and a writer of its own (``WebSocketTransport``).

    ``poll`` of python-engineio 4.15 waits with ``asyncio.wait_for``, which (Python 3.11) wraps
    what it waits for in a new task, with a future and a timer, for as long as the session is
    idle; this one waits under ``asyncio.timeout``, which cancels the waiting task itself.
    ``EngineServer.session_opened`` makes every session one (its class is swapped before
    python-engineio serves its first request).
    """

    #: the WebSocket this session talks over once its handshake or upgrade is done
    transport: WebSocketTransport | None = None

    async def poll(self) -> list[eio_packet.Packet]:
        """Wait for packets to send to the client (a long-polling GET)."""
        within = self.server.ping_interval + self.server.ping_timeout
        queue = self.queue
        try:
            async with asyncio.timeout(within):
                packets = [await queue.get()]
            queue.task_done()
        except (TimeoutError, asyncio.CancelledError):
            raise eio_exceptions.QueueEmpty() from None
        if packets == [None]:
            return []
        while not queue.empty():
            pkt = queue.get_nowait()
            queue.task_done()
            if pkt is None:
                queue.put_nowait(None)
                break
            packets.append(pkt)
        return packets

    async def send(self, pkt: eio_packet.Packet) -> None:
        """python-engineio's ``send``: straight to the WebSocket once there is one."""
        transport = self.transport
        if transport is None:
            await super().send(pkt)
            return
        if self.closed:
            raise eio_exceptions.SocketIsClosedError()
        last_ping = self.last_ping
        if last_ping and time.time() - last_ping > self.server.ping_timeout:
            await self.check_ping_timeout()  # closes the session, and sends nothing more
            return
        transport.send(pkt)

    def push(self, pkt: eio_packet.Packet) -> None:
        """Send `pkt` without waiting (a PING): on the WebSocket, or queued for a poll."""
        if self.transport is not None:
            self.transport.send(pkt)
        else:
            self.queue.put_nowait(pkt)

    async def close(
        self, wait: bool = True, abort: bool = False, reason: str | None = None
    ) -> None:
        """python-engineio's ``close``; on a WebSocket, the connection then ends too, once what
        was sent before (the CLOSE packet, unless aborted) is written."""
        await super().close(wait=False, abort=abort, reason=reason)
        if self.transport is not None:
            self.transport.end()
        if wait:
            await self.queue.join()

    async def _websocket_handler(self, ws: eio_tornado.WebSocket) -> None:
        """python-engineio's WebSocket transport (4.15) up to the end of an upgrade's
        handshake; from then on the session talks to the WebSocket directly."""
        limit = self.server.max_http_buffer_size

        async def next_packet() -> eio_packet.Packet | None:
            """The client's next frame; None once it closed or sent one over the limit."""
            try:
                data = await ws.wait()
            except OSError:
                return None
            if data and len(data) > limit:
                return None
            return eio_packet.Packet(encoded_packet=data)

        if self.connected:
            # the socket was already connected, so this is an upgrade
            self.upgrading = True  # hold packet sends during the upgrade
            probe = await next_packet()
            if probe is None or probe.packet_type != eio_packet.PING or probe.data != PROBE:
                self.upgrading = False
                return
            await ws.send(eio_packet.Packet(eio_packet.PONG, data=PROBE).encode())
            await self.queue.put(eio_packet.Packet(eio_packet.NOOP))  # end poll
            upgrade = await next_packet()
            if upgrade is None or upgrade.packet_type != eio_packet.UPGRADE:
                self.upgraded = False
                self.upgrading = False
                return
            self.upgraded = True
            self.upgrading = False
        else:
            self.connected = True
            self.upgraded = True
        WebSocketTransport(self, ws.tornado_handler).start()


class WebSocketTransport:
    """An Engine.IO session's open WebSocket: frames go from Tornado's ``on_message`` straight
    to the session, packets from the session straight to the connection.

    python-engineio's own transport runs a reader and a writer coroutine for each WebSocket and
    passes every frame through a queue to each: two more loop wake-ups, a timer and a task per
    message, and with the request's coroutines they held ~10 KB per idle connection (measured in
    docs/benchmarks.md, issue 15's third round). What it guaranteed is
    kept: frames are handled one after another in arrival order (a frame whose handling has to
    wait holds back the ones after it), a client that does not read makes the session's bounded
    queue grow (``Outbox``), not Tornado's write buffer, and the session closes when the
    connection does. A silent client is closed by python-engineio's heartbeat monitor.
    """

    __slots__ = ("_backlog", "_ending", "_unflushed", "handler", "socket")

    def __init__(self, socket: LeanSocket, handler: tornado.websocket.WebSocketHandler) -> None:
        self.socket = socket
        self.handler = handler
        #: frames that came while an earlier one was still being handled, in arrival order
        self._backlog: collections.deque[str | bytes | None] | None = None
        #: the last write, while the client has not taken it: later packets queue behind it
        self._unflushed: asyncio.Future[None] | None = None
        #: set once the session closed: the connection ends when its output is written
        self._ending = False

    def start(self) -> None:
        """Take over from python-engineio's transport: write what the session queued so far,
        then handle what the client sent so far, and every frame from now on."""
        socket, handler = self.socket, self.handler
        socket.transport = self
        handler.transport = self
        self._flush()
        received = handler.receive_queue
        while not received.empty():
            self.feed(received.get_nowait())

    # -- from the client ----------------------------------------------------------------------

    def feed(self, frame: str | bytes | None) -> None:
        """Handle a frame from the client (None: the connection ended), in arrival order."""
        if self._backlog is not None:
            self._backlog.append(frame)
        else:
            self._handle(frame)

    def _handle(self, frame: str | bytes | None) -> None:
        task = eager.start(self._receive(frame), self.socket.server.background_tasks)
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

    async def _receive(self, frame: str | bytes | None) -> None:
        socket = self.socket
        server = socket.server
        if frame is None or len(frame) > server.max_http_buffer_size:
            self.handler.close()
            await socket.close(wait=False, abort=True, reason=server.reason.TRANSPORT_CLOSE)
            self._ended()
            return
        if socket.closed or socket.closing:
            return
        try:
            if isinstance(frame, str) and frame[0] == MESSAGE_TYPE:  # the hot path
                await server.handlers["message"](socket.sid, frame[1:])
            else:
                await socket.receive(eio_packet.Packet(encoded_packet=frame))
        except eio_exceptions.UnknownPacketError:
            pass
        except Exception:
            server.logger.exception("Unknown receive error")

    def _ended(self) -> None:
        """The connection is closed and the session too: python-engineio forgets it now, as its
        own transport's end did."""
        self.socket.server.websocket_ended(self.socket, self.handler)

    # -- to the client ------------------------------------------------------------------------

    def send(self, pkt: eio_packet.Packet) -> None:
        """Write `pkt` now, or queue it behind a write the client has not taken yet."""
        if self._unflushed is not None:
            self.socket.queue.put_nowait(pkt)
        else:
            self._write(pkt)

    def end(self) -> None:
        """Close the connection once what was sent before is written."""
        self._ending = True
        if self._unflushed is None:
            self.handler.close()

    def _write(self, pkt: eio_packet.Packet) -> None:
        message = pkt.encode()
        if message == NOOP_FRAME:
            return  # the NOOP that ends the last poll of an upgrade: no poll is left to end
        connection = self.handler.ws_connection
        if connection is None or connection.is_closing():
            return  # gone: on_close ends the session
        written = _write_frame(connection, message)
        if connection.stream.writing():
            self._unflushed = written
            written.add_done_callback(self._flushed)

    def _flushed(self, written: asyncio.Future[None]) -> None:
        self._unflushed = None
        if written.cancelled() or written.exception() is not None:
            return  # the connection closed: on_close ends the session
        self._flush()

    def _flush(self) -> None:
        """Write what queued up, until a write has to wait for the client again."""
        queue = self.socket.queue
        while self._unflushed is None and not queue.empty():
            pkt = queue.get_nowait()
            queue.task_done()
            if pkt is None:
                self._ending = True
                break
            self._write(pkt)
        if self._ending and self._unflushed is None:
            self.handler.close()


def _write_frame(
    connection: tornado.websocket.WebSocketProtocol, message: str | bytes
) -> asyncio.Future[None]:
    """Write one message to a WebSocket; done once the client took it.

    Tornado's ``write_message`` wraps each write's future in a coroutine and a task of its own
    (only to turn a closed stream's error into ``WebSocketClosedError``): a task per message
    sent. Without compression this writes the same frame from the same method Tornado's
    ``write_message`` uses, minus that task; with compression Tornado's own path is taken."""
    if connection._compressor is not None:
        return connection.write_message(message, binary=isinstance(message, bytes))
    if isinstance(message, bytes):
        return connection._write_frame(True, BINARY_OPCODE, message)
    return connection._write_frame(True, TEXT_OPCODE, message.encode())
