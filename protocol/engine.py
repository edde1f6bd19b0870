"""The python-engineio / Tornado boundary, and the Engine.IO v4 conformance fixes made there.

python-engineio 4.15 is used as is; the gaps the Socket.IO conformance suite exposes are closed
from the outside: a subclass of :class:`engineio.AsyncServer` (handshake values, ``ok`` answer,
prompt close, per-address and per-session limits), a subclass of its Tornado handler (request
validation before python-engineio sees the request) and of its WebSocket wrapper (the switch to
the WebSocket protocol happens only once python-engineio has accepted the handshake, so every
refusal is an HTTP status). See docs/protocol.md for the full gap table.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import functools
import logging
import sys
import time
import urllib.parse
from typing import Any

import engineio
import tornado.httputil
import tornado.web
import tornado.websocket
from engineio import exceptions as eio_exceptions
from engineio import packet as eio_packet
from engineio.async_drivers import tornado as eio_tornado
from engineio.async_socket import AsyncSocket

from . import eager
from .queues import LeanQueue
from .versions import require

#: the python-engineio series whose internals this module was written against and tested with
#: (``_ok``, ``create_queue``, the Tornado handler's ``receive_queue``)
ENGINEIO_SERIES = (4, 15)
require("python-engineio", ENGINEIO_SERIES)
#: ... and the Tornado series (its WebSocket connection's ``_write_frame`` and ``_compressor``)
TORNADO_SERIES = (6, 6)
require("tornado", TORNADO_SERIES)

EIO_VERSION = "4"
TRANSPORTS = frozenset({"polling", "websocket"})
ALLOWED_METHODS = frozenset({"GET", "POST", "OPTIONS"})
RECORD_SEPARATOR = "\x1e"
#: Engine.IO v4 packet types a client may POST: CLOSE, PONG, MESSAGE (pings and the upgrade
#: handshake only ever go the other way or over the WebSocket).
CLIENT_PACKET_TYPES = frozenset("134")
#: ... and over a WebSocket, where the upgrade's PING "probe" and UPGRADE come too.
WEBSOCKET_PACKET_TYPES = frozenset("12345")
MESSAGE_TYPE = "4"
#: A MESSAGE carries a Socket.IO packet, which starts with its type digit.
SOCKETIO_TYPES = frozenset("0123456")
#: The only payload a non-MESSAGE packet from a client carries (the upgrade's "2probe").
PROBE = "probe"
#: The upgrade's two frames from the client: its probe, then UPGRADE.
PROBE_FRAME = "2" + PROBE
UPGRADE_FRAME = "5"
BINARY_PREFIX = "b"
NOOP_FRAME = "6"
WEBSOCKET = "websocket"
HTTP_BAD_REQUEST = 400
HTTP_TOO_MANY_REQUESTS = 429
# RFC 6455 close codes
WS_PROTOCOL_ERROR = 1002
WS_POLICY_VIOLATION = 1008
# RFC 6455 data frame opcodes
TEXT_OPCODE = 0x1
BINARY_OPCODE = 0x2
UNLIMITED = 0
#: Default bound of one session's queued output, in --max-payload units (see EngineServer).
OUTPUT_LIMIT_PAYLOADS = 4
#: What a queued packet without a text or binary payload (OPEN, PING, NOOP...) is counted as.
PACKET_OVERHEAD = 64
#: how early the shared PING timer may fire and still count a deadline as due (the loop's
#: timers are as coarse as a millisecond; asyncio allows its clock resolution the same way)
PING_CLOCK_SLACK = 0.001
#: how many distinct request texts (header names, values, paths) ``_shared`` keeps
SHARED_TEXTS = 1024

_log = logging.getLogger(__name__)


def _queued_size(item: eio_packet.Packet | None) -> int:
    """What a queued packet costs the server: its payload's length (characters or bytes)."""
    if item is None:
        return 0
    data = item.data
    return len(data) if isinstance(data, str | bytes) else PACKET_OVERHEAD


class _Outbox(LeanQueue):
    """A socket's send queue: writes the handshake intervals in exact milliseconds, and bounds
    what it holds (a LeanQueue: an idle session's empty queue costs next to nothing).

    python-engineio computes ``int(seconds) * 1000``, so 0.3 s would be announced as 0 ms. And it
    queues without limit for a client that never polls (or, on WebSocket, that never reads; see
    ``_UpgradingWebSocket.send``): past ``max_session_output`` the backlog is dropped, nothing
    but the CLOSE is queued any more, and the server closes the session.
    """

    __slots__ = ("_server", "overflowed", "sid", "size")

    def __init__(self, server: EngineServer) -> None:
        super().__init__()
        self._server = server
        #: the Engine.IO sid, known once the session opens (EngineServer.session_opened)
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


class _LeanSocket(AsyncSocket):
    """python-engineio's session, waiting without a task of its own per wait, and talking over
    a WebSocket without a reader and a writer of its own (``_WebSocketTransport``).

    ``poll`` of python-engineio 4.15 waits with ``asyncio.wait_for``, which (Python 3.11) wraps
    what it waits for in a new task, with a future and a timer, for as long as the session is
    idle; this one waits under ``asyncio.timeout``, which cancels the waiting task itself.
    ``EngineServer.session_opened`` makes every session one (its class is swapped before
    python-engineio serves its first request).
    """

    #: the WebSocket this session talks over once its handshake or upgrade is done
    transport: _WebSocketTransport | None = None

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
        """Send `pkt` without waiting (a PING, a NOOP): on the WebSocket, or queued for a poll."""
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

    async def _websocket_handler(self, ws: _UpgradingWebSocket) -> None:
        """python-engineio's WebSocket transport (4.15) up to the end of an upgrade's
        handshake; from then on the session talks to the WebSocket directly."""
        server = self.server

        async def websocket_wait() -> str | bytes:
            data = await ws.wait()
            if data and len(data) > server.max_http_buffer_size:
                raise ValueError("packet is too large")
            return data

        if self.connected:
            # the socket was already connected, so this is an upgrade
            self.upgrading = True  # hold packet sends during the upgrade
            try:
                pkt = await websocket_wait()
            except (OSError, ValueError):
                self.upgrading = False
                return
            decoded = eio_packet.Packet(encoded_packet=pkt)
            if decoded.packet_type != eio_packet.PING or decoded.data != PROBE:
                self.upgrading = False
                return
            await ws.send(eio_packet.Packet(eio_packet.PONG, data=PROBE).encode())
            await self.queue.put(eio_packet.Packet(eio_packet.NOOP))  # end poll
            try:
                pkt = await websocket_wait()
            except (OSError, ValueError):
                self.upgrading = False
                return
            decoded = eio_packet.Packet(encoded_packet=pkt)
            if decoded.packet_type != eio_packet.UPGRADE:
                self.upgraded = False
                self.upgrading = False
                return
            self.upgraded = True
            self.upgrading = False
        else:
            self.connected = True
            self.upgraded = True
        _WebSocketTransport(self, ws.tornado_handler).start()


class _WebSocketTransport:
    """An Engine.IO session's open WebSocket: frames go from Tornado's ``on_message`` straight
    to the session, packets from the session straight to the connection.

    python-engineio's own transport runs a reader and a writer coroutine for each WebSocket and
    passes every frame through a queue to each: two more loop wake-ups, a timer and a task per
    message, and ~3 KB of coroutines, queue and timer per idle connection. What it guaranteed is
    kept: frames are handled one after another in arrival order (a frame whose handling has to
    wait holds back the ones after it), a client that does not read makes the session's bounded
    queue grow (``_Outbox``), not Tornado's write buffer, and the session closes when the
    connection does. A silent client is closed by python-engineio's heartbeat monitor.
    """

    __slots__ = ("_backlog", "_ending", "_unflushed", "handler", "socket")

    def __init__(self, socket: _LeanSocket, handler: tornado.websocket.WebSocketHandler) -> None:
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
        task = eager.start(self._receive(frame), self.socket.server._background)
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
        socket = self.socket
        server = socket.server
        if server.sockets.get(socket.sid) is socket:
            del server.sockets[socket.sid]
        if server._websockets.get(socket.sid) is self.handler:
            del server._websockets[socket.sid]

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


class _Body:
    """A request body as the WSGI-like ``wsgi.input`` python-engineio reads."""

    __slots__ = ("payload",)

    def __init__(self, payload: bytes | None) -> None:
        self.payload = payload or b""

    async def read(self, length: int | None = None) -> bytes:
        if length is None:
            data, self.payload = self.payload, b""
        else:
            data, self.payload = self.payload[:length], self.payload[length:]
        return data


@functools.lru_cache(maxsize=SHARED_TEXTS)
def _shared(text: str) -> str:
    """One string object for each recently seen text: a WebSocket's environ lives as long as
    the connection, and most of its texts (header names and values, the path, the query) are
    the same for every client of one kind, so they are held once, not once per connection.
    Bounded, so that texts unique to a request (a WebSocket key, a cookie) only pass through."""
    return text


@functools.lru_cache(maxsize=SHARED_TEXTS)
def _environ_key(name: str) -> str:
    """The WSGI environ key of a header name (``HTTP_USER_AGENT``), one object per name."""
    name = name.upper()
    if name in ("CONTENT-TYPE", "CONTENT-LENGTH"):
        return name.replace("-", "_")
    return "HTTP_" + name.replace("-", "_")


def translate_request(handler: tornado.web.RequestHandler) -> dict[str, Any]:
    """python-engineio's Tornado ``translate_request``, but for two things: it defines its body
    class inside the function, so every request made a class object of its own (~1 KB, kept as
    long as the environ, i.e. a WebSocket's whole life); this one shares ``_Body``. And its keys
    and texts are ``_shared`` between requests."""
    request = handler.request
    query = _shared(request.query or "")
    uri = _shared(request.path + ("?" + query if query else ""))
    environ: dict[str, Any] = {
        "wsgi.input": _Body(request.body),
        "wsgi.errors": sys.stderr,
        "wsgi.version": (1, 0),
        "wsgi.async": True,
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        "SERVER_SOFTWARE": "aiohttp",
        "REQUEST_METHOD": _shared(request.method),
        "QUERY_STRING": query,
        "RAW_URI": uri,
        "SERVER_PROTOCOL": _shared(f"HTTP/{request.version}"),
        "REMOTE_ADDR": "127.0.0.1",
        "REMOTE_PORT": "0",
        "SERVER_NAME": "aiohttp",
        "SERVER_PORT": "0",
        "tornado.handler": handler,
    }
    for name, value in request.headers.items():
        environ[_environ_key(name)] = _shared(value)
    environ["wsgi.url_scheme"] = environ.get("HTTP_X_FORWARDED_PROTO", "http")
    environ["PATH_INFO"] = _shared(urllib.parse.urlsplit(request.path).path)
    environ["SCRIPT_NAME"] = ""
    return environ


class EngineServer(engineio.AsyncServer):
    """python-engineio's server with the boundary fixes; always ``async_mode='tornado'``.

    ``max_connections_per_ip``: open sessions one client address may hold (UNLIMITED: no
    limit); a handshake over it is refused with HTTP 429. ``max_session_output``: bytes one
    session may have queued for its client before it is closed (None: OUTPUT_LIMIT_PAYLOADS
    times ``max_http_buffer_size``). ``websocket_compression``: negotiate permessage-deflate
    with a WebSocket client that offers it (off by default: see ``get_compression_options``).
    """

    def __init__(
        self,
        max_connections_per_ip: int = UNLIMITED,
        max_session_output: int | None = None,
        websocket_compression: bool = False,
        **options: Any,
    ) -> None:
        options["async_mode"] = "tornado"
        super().__init__(**options)
        self.websocket_compression = websocket_compression
        # python-engineio's mode table is shared by every server: copy it before changing it
        self._async = {
            **self._async,
            "websocket": _UpgradingWebSocket,
            "translate_request": translate_request,
        }
        #: Engine.IO sids with a long-polling GET in flight (at most one each).
        self.polling: set[str] = set()
        self.max_connections_per_ip = max_connections_per_ip
        self.max_session_output = (
            max_session_output
            if max_session_output is not None
            else OUTPUT_LIMIT_PAYLOADS * self.max_http_buffer_size
        )
        #: sessions closed because their queued output passed max_session_output
        self.output_limit_closes = 0
        #: the client address of every open session, and how many places each address holds
        #: (open sessions and handshakes in progress)
        self._addresses: dict[str, str] = {}
        self._per_address: dict[str, int] = {}
        #: the Tornado handler of every session on a WebSocket (to drop a client that does not
        #: read)
        self._websockets: dict[str, tornado.websocket.WebSocketHandler] = {}
        #: sids whose client sent CLOSE by POST while no poll was pending, with the loop time
        #: until which the poll racing that CLOSE is still answered with a NOOP
        self._owed_noops: dict[str, float] = {}
        #: python-engineio's background tasks still running (see start_background_task)
        self._background: set[asyncio.Task[Any]] = set()
        #: each session's next PING, as the loop time it is due (see start_background_task):
        #: every session waits the same ping_interval, so insertion order is deadline order and
        #: one loop timer, armed for the first, serves them all
        self._pings: dict[str, float] = {}
        self._ping_timer: asyncio.TimerHandle | None = None

    def reserve(self, address: str) -> bool:
        """Take a place for a new session of `address` if ``max_connections_per_ip`` allows,
        in one step with the check, so that concurrent handshakes cannot overshoot the limit.
        The handshake's session then owns the place (``session_opened``), or it is given back
        (``release``)."""
        count = self.connections_from(address)
        limit = self.max_connections_per_ip
        if limit != UNLIMITED and count >= limit:
            return False
        self._per_address[address] = count + 1
        return True

    def release(self, address: str) -> None:
        """Give back a place taken by ``reserve``."""
        left = self._per_address[address] - 1
        if left:
            self._per_address[address] = left
        else:
            del self._per_address[address]

    def connections_from(self, address: str) -> int:
        """How many places `address` holds: open sessions and handshakes in progress."""
        return self._per_address.get(address, 0)

    def session_opened(self, sid: str, environ: dict[str, Any]) -> None:
        """Give the new session the place its handshake reserved (call from the connect event,
        which python-engineio fires exactly once per session), and bound its output."""
        handler = environ["tornado.handler"]
        address = handler.claim_reservation()
        if address is None:  # not served by engine_handler: count it now
            address = handler.request.remote_ip
            self._per_address[address] = self._per_address.get(address, 0) + 1
        self._addresses[sid] = address
        socket = self.sockets.get(sid)
        if socket is not None:
            if type(socket) is AsyncSocket:
                socket.__class__ = _LeanSocket
            socket.queue.sid = sid

    def session_closed(self, sid: str) -> None:
        """Give the session's place back and cancel its next PING (call from the disconnect
        event, fired once whatever ends the session)."""
        address = self._addresses.pop(sid, None)
        if address is not None:
            self.release(address)
        self._pings.pop(sid, None)  # the shared timer finds nothing due for it

    def start_background_task(self, target: Any, *args: Any, **kwargs: Any) -> asyncio.Task | None:
        """python-engineio's public hook for the tasks it starts: kept, so that shutdown() can
        end them instead of leaving them asleep past the server's end.

        Except each session's next PING: python-engineio starts a task per session that sleeps
        ping_interval and then queues the PING, i.e. a task, its coroutine frames and a sleep
        future per idle connection for its whole life (~1.5 KB). An entry in one shared
        schedule does the same for ~0.1 KB (``_schedule_ping``), not even a timer of its own."""
        socket = getattr(target, "__self__", None)
        if isinstance(socket, AsyncSocket) and target.__func__ is AsyncSocket._send_ping:
            if not (socket.closing or socket.closed):  # a PONG read after the close: no PING
                self._schedule_ping(socket.sid)
            return None
        task = super().start_background_task(target, *args, **kwargs)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    @property
    def pending_pings(self) -> int:
        """Sessions whose next PING is scheduled."""
        return len(self._pings)

    def _schedule_ping(self, sid: str) -> None:
        """Queue `sid`'s next PING ping_interval from now, at the end of the schedule (its
        latest deadline), and arm the shared timer if nothing else is due before."""
        loop = asyncio.get_running_loop()
        pings = self._pings
        pings.pop(sid, None)  # re-inserted last, where its new deadline belongs
        pings[sid] = loop.time() + self.ping_interval
        if self._ping_timer is None:
            self._ping_timer = loop.call_at(pings[next(iter(pings))], self._send_due_pings)

    def _send_due_pings(self) -> None:
        """The shared timer: PING every session now due (from the front of the schedule), then
        re-arm for the first one that is not. Sessions closed since simply are not there."""
        self._ping_timer = None
        loop = asyncio.get_running_loop()
        due = loop.time() + PING_CLOCK_SLACK
        pings = self._pings
        while pings:
            sid = next(iter(pings))
            deadline = pings[sid]
            if deadline > due:
                self._ping_timer = loop.call_at(deadline, self._send_due_pings)
                return
            del pings[sid]
            socket = self.sockets.get(sid)
            if socket is not None:
                self._ping(socket)

    def _ping(self, socket: _LeanSocket) -> None:
        """python-engineio's ``AsyncSocket._send_ping`` after its sleep: send a PING and note
        when (its ``send`` would first check the ping timeout, which cannot have passed since
        ``last_ping`` is now)."""
        if not socket.closing and not socket.closed:
            socket.last_ping = time.time()
            socket.push(eio_packet.Packet(eio_packet.PING))

    async def shutdown(self) -> None:
        """Stop the heartbeat monitor (python-engineio's shutdown, which may run only once),
        then cancel every pending PING and cancel and await every other task it started."""
        if self.service_task_handle is not None:
            await super().shutdown()
        if self._ping_timer is not None:
            self._ping_timer.cancel()
            self._ping_timer = None
        self._pings.clear()
        tasks = [task for task in self._background if not task.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)

    def create_queue(self, *args: Any, **kwargs: Any) -> LeanQueue:
        return _Outbox(self)

    def _ok(self, packets=None, headers=None, jsonp_index=None):
        """The Engine.IO spec answers a POST with ``ok``; python-engineio sends ``OK``."""
        response = super()._ok(packets, headers, jsonp_index)
        if packets is None:
            response["response"] = b"ok"
        return response

    async def close_session(self, sid: str, reason: str) -> None:
        """Close an Engine.IO session now, without waiting for its queue to drain.

        The CLOSE packet is sent to the client; a WebSocket then closes as soon as it is
        written (``_LeanSocket.close``), not after ping_interval + ping_timeout.
        """
        socket = self.sockets.get(sid)
        if socket is None or socket.closed or socket.closing:
            return
        await socket.close(wait=False, abort=False, reason=reason)
        if socket.upgraded and socket.transport is None:
            socket.queue.put_nowait(None)  # its WebSocket ends once it takes over

    def owe_noop(self, sid: str) -> None:
        """The client closed `sid` by POST with no poll pending: a poll it sent at the same time
        may still arrive, and is answered with a NOOP within ``ping_timeout`` (as the reference
        server answers a pending poll), not with 400 for a session python-engineio forgot."""
        now = asyncio.get_running_loop().time()
        owed = self._owed_noops
        while owed:  # insertion order is deadline order: drop the expired ones from the front
            oldest = next(iter(owed))
            if owed[oldest] > now:
                break
            del owed[oldest]
        owed[sid] = now + self.ping_timeout

    async def answer_owed_noop(self, handler: tornado.web.RequestHandler, sid: str) -> bool:
        """Answer a poll with the NOOP owed to `sid` (``owe_noop``), once; False if none is."""
        deadline = self._owed_noops.pop(sid, None)
        if deadline is None or deadline < asyncio.get_running_loop().time():
            return False
        response = self._ok([eio_packet.Packet(eio_packet.NOOP)])
        await self._make_response(response, translate_request(handler))
        return True

    def output_overflowed(self, sid: str) -> None:
        """A session's client stopped taking what is sent to it: count it, drop its WebSocket
        (whose writer may be waiting for a flush that never comes) and close the session."""
        self.output_limit_closes += 1
        _log.warning("closing %s: more than %d bytes queued for a client that does not read",
                     sid, self.max_session_output)
        handler = self._websockets.get(sid)
        if handler is not None:
            handler.abort()
        task = asyncio.get_running_loop().create_task(
            self.close_session(sid, self.reason.TRANSPORT_ERROR)
        )
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def expire_if_silent(self, sid: str) -> None:
        """Enforce the heartbeat timeout now rather than on the next monitor sweep."""
        socket = self.sockets.get(sid)
        if socket is not None and not socket.closed and not socket.closing:
            last_ping = socket.last_ping
            if last_ping and time.time() - last_ping > self.ping_timeout:
                await socket.check_ping_timeout()


class _UpgradingWebSocket(eio_tornado.WebSocket):
    """python-engineio's Tornado WebSocket wrapper, with two changes.

    It switches protocols (HTTP 101) only when python-engineio runs it, that is once the request
    has passed every check python-engineio makes (Origin, parameters, session, the connect
    event): a refusal is then an HTTP status, never a WebSocket without a session. And ``send``
    waits for the client to take a message whenever the socket's buffer is not empty, so a
    client that does not read makes the session's queue grow (where it is bounded), not
    Tornado's write buffer.
    """

    async def __call__(self, environ: dict[str, Any]) -> None:
        handler = environ["tornado.handler"]
        self.tornado_handler = handler
        self.environ = environ
        socket: AsyncSocket = self.handler.__self__  # python-engineio passes a bound method
        server: EngineServer = socket.server
        if not await handler.switch_protocols():
            # Tornado refused the handshake itself (an HTTP status too): a session made for
            # this WebSocket ends now; a polling session being upgraded goes on as it was.
            if not socket.connected:
                await socket.close(wait=False, abort=True, reason=server.reason.TRANSPORT_CLOSE)
            return
        server._websockets[socket.sid] = handler
        try:
            await self.handler(self)
        finally:
            if handler.transport is None and server._websockets.get(socket.sid) is handler:
                del server._websockets[socket.sid]  # else the transport's end forgets it

    async def send(self, message: str | bytes) -> None:
        if message == NOOP_FRAME:
            # python-engineio queues a NOOP to end the last poll of an upgrade; when no poll was
            # pending it would otherwise leak onto the new WebSocket
            return
        handler = self.tornado_handler
        try:
            written = handler.write_message(message, binary=isinstance(message, bytes))
            if handler.ws_connection.stream.writing():
                await written
        except tornado.websocket.WebSocketClosedError:
            raise eio_exceptions.EngineIOError() from None


def _valid_frame(frame: str, types: frozenset[str]) -> bool:
    """Whether a text frame from a client is an Engine.IO packet python-engineio can take as is.

    python-engineio raises on an unknown type (e.g. ``x``), and JSON-decodes any payload that
    does not start with a digit (``4"0"`` would reach us as ``0``; deep nesting raises
    RecursionError). So a MESSAGE must carry a Socket.IO packet, which starts with its type
    digit, and any other packet carries nothing but the upgrade's probe.
    """
    if not frame or frame[0] not in types:
        return False
    payload = frame[1:]
    if frame[0] == MESSAGE_TYPE:
        return bool(payload) and payload[0] in SOCKETIO_TYPES
    return payload in ("", PROBE)


def _valid_payload(body: bytes, limit: int) -> bool:
    """Whether a long-polling POST body is a well-formed Engine.IO v4 payload."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    frames = text.split(RECORD_SEPARATOR)
    if len(frames) > limit:
        return False
    for frame in frames:
        if frame.startswith(BINARY_PREFIX):
            try:
                base64.b64decode(frame[1:], validate=True)
            except binascii.Error:
                return False
        elif not _valid_frame(frame, CLIENT_PACKET_TYPES):
            return False
    return True


def _is_upgrade(headers: tornado.httputil.HTTPHeaders) -> bool:
    """Whether a request asks to switch to the WebSocket protocol (Tornado's own test)."""
    if headers.get("Upgrade", "").lower() != WEBSOCKET:
        return False
    tokens = headers.get("Connection", "").split(",")
    return "upgrade" in (token.strip().lower() for token in tokens)


def engine_handler(eio: EngineServer) -> type[tornado.websocket.WebSocketHandler]:
    """A Tornado handler for ``eio``: python-engineio's own, with requests validated first."""
    base = eio_tornado.get_tornado_handler(eio)
    max_packets = engineio.payload.Payload.max_decode_packets

    class EngineHandler(base):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            # python-engineio's handler makes an asyncio.Queue (~3 KB); the reader needs less
            self.receive_queue = LeanQueue()

        _sid: str | None = None
        _transport: str | None = None
        #: set once this WebSocket sent a frame that is not an Engine.IO packet
        _broken = False
        #: the client address whose place (EngineServer.reserve) this handshake holds until
        #: its session takes it
        _reservation: str | None = None
        #: resolved once Tornado has switched protocols (True) or refused the handshake (False)
        _opened: asyncio.Future[bool] | None = None
        _protocol: asyncio.Task[None] | None = None
        #: (code, reason) when this WebSocket is accepted only to be closed
        _close_on_open: tuple[int, str] | None = None
        #: the polling session this WebSocket upgrades, until the upgrade's frames are seen
        _upgrading: AsyncSocket | None = None
        _probed = False
        #: the session's transport, once the WebSocket is open and any upgrade done
        transport: _WebSocketTransport | None = None

        def _refuse(self, message: str, status: int = HTTP_BAD_REQUEST) -> None:
            self.set_status(status)
            self.set_header("Content-Type", "text/plain")
            self.finish(message)

        async def prepare(self) -> None:
            """Refuse what the Engine.IO spec refuses before python-engineio sees the request,
            and take the new session's place under the per-address limit."""
            request = self.request
            if request.method not in ALLOWED_METHODS:
                return self._refuse("Invalid method")
            args = request.query_arguments
            if args.get("EIO") != [EIO_VERSION.encode()]:
                return self._refuse("Unsupported protocol version")
            transport = args.get("transport", [b""])[0].decode("latin-1")
            if transport not in TRANSPORTS or transport not in eio.transports:
                return self._refuse("Invalid transport")
            self._transport = transport
            sid = args.get("sid", [b""])[0].decode("latin-1") or None
            self._sid = sid
            if request.method == "POST" and sid is None:
                return self._refuse("Invalid session")
            if request.method == "GET":
                if (transport == WEBSOCKET) != _is_upgrade(request.headers):
                    return self._refuse("Invalid websocket upgrade")
                if sid is None:
                    if not eio.reserve(request.remote_ip):
                        return self._refuse("Too many connections from this address",
                                            HTTP_TOO_MANY_REQUESTS)
                    self._reservation = request.remote_ip
            if sid is not None:
                await eio.expire_if_silent(sid)
            return None

        def claim_reservation(self) -> str | None:
            """Hand this handshake's place over to its session (EngineServer.session_opened)."""
            address, self._reservation = self._reservation, None
            return address

        def _release_reservation(self) -> None:
            address = self.claim_reservation()
            if address is not None:
                eio.release(address)

        def on_finish(self) -> None:
            self._release_reservation()

        def on_close(self) -> None:
            if self.transport is not None:
                self.transport.feed(None)
            else:
                super().on_close()  # tells python-engineio's upgrade handshake
            self._release_reservation()

        async def get(self, *args: Any, **kwargs: Any) -> None:
            if self._transport == WEBSOCKET:
                await self._websocket()
                return
            sid = self._sid
            if sid is None:
                await eio.handle_request(self)
            elif sid in eio.polling:
                # a second concurrent poll is a client error: refuse it and end the session
                self._refuse("Overlapping poll")
                await eio.close_session(sid, eio.reason.TRANSPORT_ERROR)
            elif not await eio.answer_owed_noop(self, sid):
                eio.polling.add(sid)
                try:
                    await eio.handle_request(self)
                finally:
                    eio.polling.discard(sid)

        async def _websocket(self) -> None:
            """A WebSocket handshake: python-engineio checks it and switches protocols last
            (``_UpgradingWebSocket``), so every refusal is an HTTP status; a WebSocket still open
            when python-engineio is done with it is closed at once."""
            sid = self._sid
            socket = None
            if sid is not None:
                socket = eio.sockets.get(sid)
                if socket is None or socket.closed:
                    return self._refuse("Invalid session")
                if socket.upgraded or socket.upgrading:
                    # as the reference server does: accepted, then closed
                    self._close_on_open = (WS_POLICY_VIOLATION, "session already upgraded")
                    await tornado.websocket.WebSocketHandler.get(self)
                    return None
                # from now on a poll gets a NOOP and a second upgrade is refused
                socket.upgrading = True
                self._upgrading = socket
            try:
                await eio.handle_request(self)
            finally:
                if socket is not None and not socket.upgraded:
                    socket.upgrading = False  # the upgrade failed: polling goes on
                self._upgrading = None
                if self.transport is None:
                    self.close(WS_POLICY_VIOLATION, "no Engine.IO session")
            if self.transport is None and self._protocol is not None:
                await self._protocol
            # else the request is done: Tornado's frame loop (_protocol) and the session's
            # transport carry the connection from here
            return None

        async def switch_protocols(self) -> bool:
            """Let Tornado complete the WebSocket handshake (HTTP 101), or refuse it with its
            own status; True once the WebSocket is open. Tornado then reads frames in a task
            of its own until the connection ends."""
            loop = asyncio.get_running_loop()
            opened = self._opened = loop.create_future()
            protocol = self._protocol = loop.create_task(
                tornado.websocket.WebSocketHandler.get(self)
            )
            protocol.add_done_callback(self._protocol_ended)
            return await opened

        def _protocol_ended(self, protocol: asyncio.Task[None]) -> None:
            if self._opened is not None and not self._opened.done():
                self._opened.set_result(False)
            if not protocol.cancelled() and protocol.exception() is not None:
                _log.error("WebSocket connection failed", exc_info=protocol.exception())

        def open(self, *args: Any, **kwargs: Any) -> None:
            if self._close_on_open is not None:
                self.close(*self._close_on_open)
            elif self._opened is not None and not self._opened.done():
                self._opened.set_result(True)
            # Emptied in place, since WebSocketHandler.get holds the object for the connection's
            # life (~1 KB of lists and names a WebSocket): Tornado reads them only for the
            # handshake, and python-engineio and the Socket.IO handlers read the environ.
            self.request.headers.clear()

        def get_compression_options(self) -> dict[str, Any] | None:
            """No permessage-deflate unless the server was built with ``websocket_compression``,
            as the reference server's default: with context takeover each compressing
            connection holds a zlib compressor and decompressor on the server for its whole life
            (measured in docs/benchmarks.md), and a compressing client (Node's ws) delays every
            frame by a trip through zlib's thread pool, so its "5" came after a poll it sent
            later. With it, Tornado's defaults apply."""
            return {} if eio.websocket_compression else None

        def abort(self) -> None:
            """Drop the connection at once, unsent output and all."""
            connection = self.ws_connection
            if connection is not None and connection.stream is not None:
                connection.stream.close()

        async def post(self, *args: Any, **kwargs: Any) -> None:
            sid = self._sid
            assert sid is not None  # prepare() refused a POST without one
            socket = eio.sockets.get(sid)
            if socket is not None and not _valid_payload(self.request.body, max_packets):
                self._refuse("Invalid payload")
                await eio.close_session(sid, eio.reason.TRANSPORT_ERROR)
                return
            was_open = socket is not None and not socket.closed
            await eio.handle_request(self)
            if was_open and socket.closed:
                # A client CLOSE: the poll that races it, pending or arriving right after, is
                # answered with a NOOP (as the reference server does) instead of hanging or
                # failing; the ones after it get 400 (python-engineio forgets the session).
                if sid in eio.polling:
                    socket.queue.put_nowait(eio_packet.Packet(eio_packet.NOOP))
                else:
                    eio.owe_noop(sid)

        def on_message(self, message: str | bytes) -> None:
            """Hand a frame to the session's transport (to python-engineio's queue while an
            upgrade's handshake reads it), or refuse one python-engineio would die on (see
            ``_valid_frame``): close the WebSocket with 1002 and end the session, as if the
            client had closed, instead of leaving a session whose frames nobody reads."""
            if self._broken:
                return
            if isinstance(message, str):
                if not _valid_frame(message, WEBSOCKET_PACKET_TYPES):
                    self._broken = True
                    _log.info("closing a WebSocket that sent %r, not an Engine.IO packet",
                              message[:16])
                    self.close(WS_PROTOCOL_ERROR, "invalid Engine.IO packet")
                    self._received(None)  # the session ends now
                    return
                if self._upgrading is not None:
                    self._track_upgrade(message)
            self._received(message)

        def _received(self, message: str | bytes | None) -> None:
            if self.transport is not None:
                self.transport.feed(message)
            else:  # python-engineio's upgrade handshake is still reading
                self.receive_queue.put_nowait(message)

        def _track_upgrade(self, frame: str) -> None:
            """Complete an upgrade the moment its UPGRADE frame arrives, as the reference
            server does: python-engineio would only mark it once its reader gets to the frame,
            and a poll arriving in between would still be answered."""
            if frame == PROBE_FRAME and not self._probed:
                self._probed = True
                return
            if frame == UPGRADE_FRAME and self._probed and self._upgrading is not None:
                self._upgrading.upgraded = True
            self._upgrading = None  # done, or python-engineio fails the upgrade

    return EngineHandler
