"""The python-engineio / Tornado boundary, and the Engine.IO v4 conformance fixes made there.

python-engineio 4.15 is used as is; the gaps the Socket.IO conformance suite exposes are closed
from the outside: a subclass of :class:`engineio.AsyncServer` (handshake values, ``ok`` answer,
prompt close, per-address and per-session limits), a subclass of its Tornado handler (request
validation before python-engineio sees the request) and of its WebSocket wrapper (the switch to
the WebSocket protocol happens only once python-engineio has accepted the handshake, so every
refusal is an HTTP status). Each session it makes is one of protocol/sessions.py's. See
docs/protocol.md for the full gap table.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
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
from engineio import packet as eio_packet
from engineio.async_drivers import tornado as eio_tornado
from engineio.async_socket import AsyncSocket

from .admission import Admission
from .queues import LeanQueue
from .sessions import (
    ENGINEIO_SERIES,
    MESSAGE_TYPE,
    PROBE,
    LeanSocket,
    Outbox,
    WebSocketTransport,
)
from .versions import require

require("python-engineio", ENGINEIO_SERIES)  # the series sessions.py names, for this module too

EIO_VERSION = "4"
TRANSPORTS = frozenset({"polling", "websocket"})
ALLOWED_METHODS = frozenset({"GET", "POST", "OPTIONS"})
RECORD_SEPARATOR = "\x1e"
#: Engine.IO v4 packet types a client may POST: CLOSE, PONG, MESSAGE (pings and the upgrade
#: handshake only ever go the other way or over the WebSocket).
CLIENT_PACKET_TYPES = frozenset("134")
#: ... and over a WebSocket, where the upgrade's PING "probe" and UPGRADE come too.
WEBSOCKET_PACKET_TYPES = frozenset("12345")
#: A MESSAGE carries a Socket.IO packet, which starts with its type digit.
SOCKETIO_TYPES = frozenset("0123456")
#: The upgrade's two frames from the client: its probe, then UPGRADE.
PROBE_FRAME = "2" + PROBE
UPGRADE_FRAME = "5"
BINARY_PREFIX = "b"
WEBSOCKET = "websocket"
HTTP_BAD_REQUEST = 400
HTTP_TOO_MANY_REQUESTS = 429
HTTP_SERVICE_UNAVAILABLE = 503
# RFC 6455 close codes
WS_PROTOCOL_ERROR = 1002
WS_POLICY_VIOLATION = 1008
UNLIMITED = 0
#: Default bound of one session's queued output, in --max-payload units (see EngineServer).
OUTPUT_LIMIT_PAYLOADS = 4
#: how early the shared PING timer may fire and still count a deadline as due (the loop's
#: timers are as coarse as a millisecond; asyncio allows its clock resolution the same way)
PING_CLOCK_SLACK = 0.001
#: how many distinct request texts (header names, values, paths) ``_shared`` keeps
SHARED_TEXTS = 1024

_log = logging.getLogger(__name__)


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
    limit); a handshake over it is refused with HTTP 429. ``max_connections``: the same over all
    addresses (protocol/admission.py), refused with HTTP 503. ``max_session_output``: bytes one
    session may have queued for its client before it is closed (None: OUTPUT_LIMIT_PAYLOADS
    times ``max_http_buffer_size``). ``websocket_compression``: negotiate permessage-deflate
    with a WebSocket client that offers it (off by default: see ``get_compression_options``).
    """

    def __init__(
        self,
        max_connections_per_ip: int = UNLIMITED,
        max_connections: int = UNLIMITED,
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
        self.admission = Admission(max_connections)
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
        #: tasks shutdown() ends: python-engineio's (see start_background_task), and a
        #: WebSocket frame's whose handling waits (sessions.WebSocketTransport)
        self.background_tasks: set[asyncio.Task[Any]] = set()
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
        self.admission.opened()
        return True

    def release(self, address: str) -> None:
        """Give back a place taken by ``reserve``."""
        self.admission.closed()
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
            self.admission.opened()
        self._addresses[sid] = address
        socket = self.sockets.get(sid)
        if socket is not None:
            if type(socket) is AsyncSocket:
                socket.__class__ = LeanSocket
            socket.queue.sid = sid

    def session_closed(self, sid: str) -> None:
        """Give the session's place back and cancel its next PING (call from the disconnect
        event, fired once whatever ends the session)."""
        address = self._addresses.pop(sid, None)
        if address is not None:
            self.release(address)
        self._pings.pop(sid, None)  # the shared timer finds nothing due for it

    def websocket_ended(
        self, socket: AsyncSocket, handler: tornado.websocket.WebSocketHandler
    ) -> None:
        """A session's WebSocket and the session are both closed: forget them, as
        python-engineio's own transport did at its end."""
        if self.sockets.get(socket.sid) is socket:
            del self.sockets[socket.sid]
        if self._websockets.get(socket.sid) is handler:
            del self._websockets[socket.sid]

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
        self.background_tasks.add(task)
        task.add_done_callback(self.background_tasks.discard)
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

    def _ping(self, socket: LeanSocket) -> None:
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
        tasks = [task for task in self.background_tasks if not task.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)

    def create_queue(self, *args: Any, **kwargs: Any) -> LeanQueue:
        return Outbox(self)

    def _ok(self, packets=None, headers=None, jsonp_index=None):
        """The Engine.IO spec answers a POST with ``ok``; python-engineio sends ``OK``."""
        response = super()._ok(packets, headers, jsonp_index)
        if packets is None:
            response["response"] = b"ok"
        return response

    async def close_session(self, sid: str, reason: str) -> None:
        """Close an Engine.IO session now, without waiting for its queue to drain.

        The CLOSE packet is sent to the client; a WebSocket then closes as soon as it is
        written (``LeanSocket.close``), not after ping_interval + ping_timeout.
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
        self.background_tasks.add(task)
        task.add_done_callback(self.background_tasks.discard)

    async def expire_if_silent(self, sid: str) -> None:
        """Enforce the heartbeat timeout now rather than on the next monitor sweep."""
        socket = self.sockets.get(sid)
        if socket is not None and not socket.closed and not socket.closing:
            last_ping = socket.last_ping
            if last_ping and time.time() - last_ping > self.ping_timeout:
                await socket.check_ping_timeout()


class _UpgradingWebSocket(eio_tornado.WebSocket):
    """python-engineio's Tornado WebSocket wrapper, switching protocols (HTTP 101) only when
    python-engineio runs it, that is once the request has passed every check python-engineio
    makes (Origin, parameters, session, the connect event): a refusal is then an HTTP status,
    never a WebSocket without a session. Once the session's ``WebSocketTransport`` takes over,
    only the upgrade's probe answer has been sent through it."""

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
        transport: WebSocketTransport | None = None

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
                    if not eio.admission.admit():
                        self.set_header("Connection", "close")  # its descriptor back at once
                        return self._refuse("Server at capacity", HTTP_SERVICE_UNAVAILABLE)
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
