"""The python-engineio / Tornado boundary: with protocol/transport.py (an open WebSocket), the
only glue between those libraries and rollcall's session logic.

python-engineio's ``AsyncServer`` serves the handshake, long-polling and the upgrade's request
through its public surface (``handle_request``, its events, ``create_queue``, ``disconnect``) and
its packet codec. rollcall owns what happens to a session after that, as the sans-I/O logic of
protocol/session.py: the Outbox (protocol/queues.py), the heartbeat (one shared PING schedule
under one loop timer), the upgrade's states and what a WebSocket frame does (protocol/transport.py
carries an open WebSocket without a reader or writer coroutine). Four python-engineio internals
remain, each listed in docs/architecture.md with its test in tests/unit/test_internals.py: the
``websocket`` entry of its driver table, where a session's WebSocket is handed over, and its
``translate_request`` entry; ``AsyncSocket._send_ping``, the per-session PING task the shared
schedule replaces; ``Payload.max_decode_packets``, read.

The Tornado handler (``engine_handler``) refuses what the Engine.IO spec refuses before
python-engineio sees a request, and every refusal of a WebSocket before its 101.
See docs/protocol.md for the full gap table.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextvars
import functools
import logging
import types
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import engineio
import tornado.httputil
import tornado.web
import tornado.websocket
from engineio import packet as eio_packet
from engineio.async_socket import AsyncSocket

from . import eager
from .admission import Admission
from .pacing import Pacer
from .queues import Outbox
from .session import (
    CLIENT_PACKET_TYPES,
    PONG_TYPE,
    Heartbeat,
    Phase,
    Poll,
    Session,
    valid_frame,
)
from .transport import WebSocketTransport

EIO_VERSION = "4"
ALLOWED_METHODS = frozenset({"GET", "POST", "OPTIONS"})
RECORD_SEPARATOR = "\x1e"
BINARY_PREFIX = "b"
POLLING = "polling"
WEBSOCKET = "websocket"
TRANSPORTS = frozenset({POLLING, WEBSOCKET})
NOOP_RESPONSE = b"6"
HTTP_BAD_REQUEST = 400
HTTP_TOO_MANY_REQUESTS = 429
HTTP_SERVICE_UNAVAILABLE = 503
# RFC 6455 close codes
WS_POLICY_VIOLATION = 1008
UNLIMITED = 0
#: Default bound of one session's queued output, in --max-payload units (see EngineServer).
OUTPUT_LIMIT_PAYLOADS = 4
#: how many distinct request texts (header names, values, paths) ``_shared`` keeps
SHARED_TEXTS = 1024
#: the headers Tornado's ``RequestHandler.clear`` starts a response with
DEFAULT_RESPONSE_HEADERS = ("Server", "Content-Type", "Date")
#: the texts of an open WebSocket's request (documented attributes of Tornado's request) that
#: most WebSockets have in common, held once for all of them (``_shared``)
SHARED_REQUEST_TEXTS = ("method", "uri", "version", "path", "query", "host", "host_name")
#: what an open WebSocket's handler keeps of its path's arguments (read before ``get`` only)
NO_PATH_ARGS: tuple[()] = ()
#: what an open WebSocket's request and handler keep of their argument dicts (read before the
#: 101 only): one read-only empty mapping for all, rather than an empty dict each
NO_ARGUMENTS: Mapping[str, Any] = types.MappingProxyType({})
#: the WSGI environ's request body
BODY_KEY = "wsgi.input"
#: python-engineio answers a POST with this; the Engine.IO spec with ``ok``
ENGINEIO_POST_ANSWER = b"OK"
POST_ANSWER = b"ok"

_log = logging.getLogger(__name__)

#: the Tornado handler whose request python-engineio is handling in this task
_serving: contextvars.ContextVar[tornado.web.RequestHandler] = contextvars.ContextVar("serving")


@functools.lru_cache(maxsize=SHARED_TEXTS)
def _shared(text: str) -> str:
    """One string object for each recently seen text: a session's environ lives as long as the
    session, and most of its texts (header names and values, the path, the query) are the same
    for every client of one kind, so they are held once, not once per connection. Bounded, so
    that texts unique to a request (a WebSocket key, a cookie) only pass through."""
    return text


class _Body:
    """A request body as the WSGI ``wsgi.input`` python-engineio reads, one class for all."""

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
def _environ_key(name: str) -> str:
    """The WSGI environ key of a header name (``HTTP_USER_AGENT``), one object per name."""
    name = name.upper().replace("-", "_")
    return name if name in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + name


def translate_request(handler: tornado.web.RequestHandler) -> dict[str, Any]:
    """The environ of a Tornado request, for python-engineio (the ``translate_request`` entry of
    its driver table) and the Socket.IO connect handlers, which keep it for a session's life.

    python-engineio's own makes a class object per request for the body (~2.6 KB of garbage each
    until a full collection: +1.9 KiB per idle WebSocket in ``bench/load_idle.py``) and names
    every peer 127.0.0.1. This one shares one body class, names the real peer (``REMOTE_ADDR``,
    after --trusted-proxies), shares the keys and texts most requests have in common, and holds
    only what is read (the request line's parts, the headers, the peer, the handler): a browser's
    WebSocket environ then fits a dict a size class smaller than one with WSGI's constants."""
    request = handler.request
    environ: dict[str, Any] = {
        BODY_KEY: _Body(request.body),
        "wsgi.url_scheme": _shared(request.protocol),
        "REQUEST_METHOD": _shared(request.method),
        "PATH_INFO": _shared(request.path),
        "QUERY_STRING": _shared(request.query or ""),
        "REMOTE_ADDR": request.remote_ip,
        "tornado.handler": handler,
    }
    for name, value in request.headers.items():
        environ[_environ_key(name)] = _shared(value)
    return environ


@functools.lru_cache(maxsize=SHARED_TEXTS)
def _shared_keys(keys: tuple[str, ...]) -> tuple[str, ...]:
    """One tuple for each recently seen list of environ keys (the clients of one kind send the
    same headers in the same order)."""
    return keys


class KeptEnviron:
    """A session's environ as the Socket.IO layer keeps it for the session's life, to give each
    namespace's connect handler: its keys (one tuple for all the clients whose requests had the
    same headers) and its values, without the request's body. An environ dict of a WebSocket's
    ~15 entries costs ~480 bytes, its values' tuple ~180 (docs/benchmarks.md)."""

    __slots__ = ("keys", "values")

    def __init__(self, environ: Mapping[str, Any]) -> None:
        kept = [(key, value) for key, value in environ.items() if key != BODY_KEY]
        self.keys = _shared_keys(tuple(key for key, _ in kept))
        self.values = tuple(value for _, value in kept)

    def unpack(self) -> dict[str, Any]:
        """The environ, as a new dict."""
        return dict(zip(self.keys, self.values, strict=True))


class _Live:
    """A session as the server keeps it: its state, its Outbox, its WebSocket once it has one,
    and the client address whose place (``EngineServer.reserve``) it holds (here rather than in
    an index of its own: a dict entry less per session)."""

    __slots__ = ("address", "outbox", "session", "transport")

    def __init__(self, session: Session, outbox: Outbox, address: str) -> None:
        self.session = session
        self.outbox = outbox
        self.address = address
        self.transport: WebSocketTransport | None = None


class EngineServer(engineio.AsyncServer):
    """python-engineio's server with rollcall's sessions; always ``async_mode='tornado'``.

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
        # python-engineio's driver table is shared by every server: copy it before changing it
        self._async = {
            **self._async,
            "websocket": _HandOff,
            "translate_request": translate_request,
        }
        #: every open session, by Engine.IO sid
        self.sessions: dict[str, _Live] = {}
        #: the Outbox of the session python-engineio is opening (its OPEN packet came; the
        #: connect event, next, registers it)
        self._opening: Outbox | None = None
        #: the Socket.IO layer's message handler (see ``on``)
        self.on_message: Callable[[str, str | bytes], Awaitable[Any]] | None = None
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
        #: sessions closed so far, whatever closed them (heap.py schedules full collections by it)
        self.sessions_closed = 0
        #: how many places each client address holds (open sessions and handshakes in
        #: progress)
        self._per_address: dict[str, int] = {}
        #: sids whose client sent CLOSE by POST while no poll was pending, with the loop time
        #: until which the poll racing that CLOSE is still answered with a NOOP
        self._owed_noops: dict[str, float] = {}
        #: tasks shutdown() ends: python-engineio's (see start_background_task), a WebSocket
        #: frame's whose handling waits, a close an overflow started
        self.background_tasks: set[asyncio.Task[Any]] = set()
        #: closes of sessions whose client's side ended, started a slice per loop iteration
        #: (protocol/pacing.py), and those started whose disconnect handlers still run
        self.ending = Pacer()
        self._ending_tasks: set[asyncio.Task[Any]] = set()
        self.heartbeat = Heartbeat(self.ping_interval, self.ping_timeout)
        self._heartbeat_timer: asyncio.TimerHandle | None = None
        self._shut_down = False

    def on(self, event: str, handler: Any = None) -> Any:
        """python-engineio's ``on``; the message handler is kept for the WebSocket transport,
        which calls it straight from a frame."""
        if event == "message" and handler is not None:
            self.on_message = handler
        return super().on(event, handler)

    # -- the per-address limit ----------------------------------------------------------------

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

    # -- a session's life ---------------------------------------------------------------------

    def create_queue(self, *args: Any, **kwargs: Any) -> Outbox:
        return Outbox(self)

    def outbox_opened(self, outbox: Outbox) -> None:
        self._opening = outbox

    def session_opened(self, sid: str) -> None:
        """Register the new session and give it the place its handshake reserved (call from
        the connect event, which python-engineio fires exactly once per session). Its first PING
        is scheduled once the handshake's answer is out (``handshake_answered``), so that none
        rides in it."""
        outbox, self._opening = self._opening, None
        assert outbox is not None and outbox.sid == sid  # queued its OPEN just before
        handler = _serving.get(None)
        address = handler.claim_reservation(sid) if handler is not None else None
        if address is None:  # not served by engine_handler: count it now
            address = handler.request.remote_ip if handler is not None else ""
            self._per_address[address] = self._per_address.get(address, 0) + 1
            self.admission.opened()
        live = _Live(Session(sid), outbox, address)
        outbox.session = live.session
        self.sessions[sid] = live

    def handshake_answered(self, sid: str) -> None:
        """The OPEN packet of `sid` is written: its first PING is due in ping_interval."""
        if sid in self.sessions:
            self.pong(sid)

    def session_closed(self, sid: str, reason: str) -> str:
        """Forget the session: its place, its heartbeat (call from the disconnect event, fired
        once whatever ends the session); returns the reason to report, rollcall's own when it
        closed the session."""
        self.heartbeat.forget(sid)
        live = self.sessions.pop(sid, None)
        if live is None:
            return reason
        self.release(live.address)
        self.sessions_closed += 1
        session = live.session
        session.closing()
        return session.close_reason or reason

    async def close_session(self, sid: str, reason: str) -> None:
        """Close an Engine.IO session now, for `reason`, without waiting for its output to
        drain: the CLOSE packet goes to the client, and a WebSocket closes once it is written."""
        live = self.sessions.get(sid)
        if live is None or live.session.close_reason is not None:
            return
        live.session.close_reason = reason
        await self.disconnect(sid)
        if live.transport is not None:
            live.transport.end()

    def end_session(self, sid: str, reason: str) -> None:
        """The client's side of `sid` ended (its WebSocket closed, its PONG is late): close the
        session for `reason`, paced, since a whole school's sessions may end at once."""
        self.ending.call(self._end, sid, reason)

    def _end(self, sid: str, reason: str) -> None:
        eager.start(self.close_session(sid, reason), self._ending_tasks)

    async def finish_ends(self) -> None:
        """Close now every session whose end is still paced, and wait until those closes are
        done (a shutdown: a client that left is closed as having left, not by the server)."""
        self.ending.flush()
        if self._ending_tasks:
            await asyncio.wait(set(self._ending_tasks))

    def push(self, sid: str, pkt: eio_packet.Packet) -> None:
        """Send `pkt` to the session's client: on its WebSocket, or queued for its next poll."""
        live = self.sessions.get(sid)
        if live is not None and live.session.close_reason is None:
            live.outbox.put_nowait(pkt)

    def connection_counts(self) -> dict[str, int]:
        """Open sessions by transport (an upgrade in progress still counts as polling)."""
        counts = dict.fromkeys(TRANSPORTS, 0)
        for live in self.sessions.values():
            counts[WEBSOCKET if live.session.phase is Phase.WEBSOCKET else POLLING] += 1
        return counts

    def websocket_handed(self, handler: tornado.websocket.WebSocketHandler, sid: str) -> bool:
        """python-engineio hands over the session `sid`'s WebSocket (new, or upgrading a polling
        session): from now on rollcall carries it. False if there is no such session."""
        live = self.sessions.get(sid)
        if live is None or live.session.closed:
            return False
        live.session.websocket_opened(upgrade=live.session.phase is Phase.POLLING
                                      and handler.upgrades)
        transport = WebSocketTransport(self, live.session, live.outbox, handler,
                                       handler.compressing)
        live.transport = handler.transport = transport
        transport.start()
        if not handler.upgrades:
            self.handshake_answered(sid)
        return True

    def output_overflowed(self, sid: str) -> None:
        """A session's client stopped taking what is sent to it: count it, drop its WebSocket
        and close the session."""
        self.output_limit_closes += 1
        _log.warning("closing %s: more than %d bytes queued for a client that does not read",
                     sid, self.max_session_output)
        live = self.sessions.get(sid)
        if live is not None and live.transport is not None:
            live.transport.close()
        self._spawn(self.close_session(sid, self.reason.TRANSPORT_ERROR))

    def _spawn(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self.background_tasks.add(task)
        task.add_done_callback(self.background_tasks.discard)

    # -- the heartbeat ------------------------------------------------------------------------

    def start_background_task(self, target: Any, *args: Any, **kwargs: Any) -> asyncio.Task | None:
        """python-engineio's public hook for the tasks it starts: kept, so that shutdown() can
        end them instead of leaving them asleep past the server's end.

        Except each session's PING task (``AsyncSocket._send_ping``, sleeping ping_interval in
        a task per session, ~1.5 KB an idle connection): rollcall's heartbeat PINGs every
        session from one shared schedule instead (``pong``, ``_beat``), and with python-engineio's
        never run, its own ping timeout never fires."""
        if getattr(target, "__func__", None) is AsyncSocket._send_ping:
            return None
        task = super().start_background_task(target, *args, **kwargs)
        self.background_tasks.add(task)
        task.add_done_callback(self.background_tasks.discard)
        return task

    @property
    def pending_pings(self) -> int:
        """Sessions whose next PING is scheduled."""
        return self.heartbeat.pending_pings

    def pong(self, sid: str) -> None:
        """`sid` opened or answered a PING: its next PING is due in ping_interval."""
        loop = asyncio.get_running_loop()
        self.heartbeat.pong(sid, loop.time())
        self._arm(loop)

    def _arm(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._heartbeat_timer is None:
            deadline = self.heartbeat.next_deadline()
            if deadline is not None:
                self._heartbeat_timer = loop.call_at(deadline, self._beat)

    def _beat(self) -> None:
        """The shared timer: PING every session now due, close every one whose PONG is late,
        re-arm for what is due next."""
        self._heartbeat_timer = None
        loop = asyncio.get_running_loop()
        ping, late = self.heartbeat.due(loop.time())
        for sid in ping:
            self.push(sid, eio_packet.Packet(eio_packet.PING))
        for sid in late:
            self.end_session(sid, self.reason.PING_TIMEOUT)
        self._arm(loop)

    async def expire_if_silent(self, sid: str) -> None:
        """Enforce the heartbeat timeout now rather than when the shared timer gets to it."""
        if self.heartbeat.overdue(sid, asyncio.get_running_loop().time()):
            self.heartbeat.forget(sid)
            await self.close_session(sid, self.reason.PING_TIMEOUT)

    async def shutdown(self) -> None:
        """Stop the heartbeat monitor (python-engineio's shutdown, which may run only once),
        then cancel the heartbeat, and cancel and await every task it started, the closes
        still running included: a stop waits for those within its own bound (close_sessions
        through ``finish_ends``), not here."""
        if not self._shut_down:
            self._shut_down = True
            await super().shutdown()
        if self._heartbeat_timer is not None:
            self._heartbeat_timer.cancel()
            self._heartbeat_timer = None
        self.heartbeat.clear()
        self.ending.flush()
        tasks = [task for task in self.background_tasks | self._ending_tasks if not task.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)

    # -- polls racing a client's CLOSE --------------------------------------------------------

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

    def take_owed_noop(self, sid: str) -> bool:
        """Whether a poll of `sid` is owed a NOOP (``owe_noop``); once."""
        deadline = self._owed_noops.pop(sid, None)
        return deadline is not None and deadline >= asyncio.get_running_loop().time()


class _HandOff:
    """The ``websocket`` entry of python-engineio's driver table: python-engineio calls it once
    it has accepted a WebSocket request (a new session's, or an upgrade's), with the session's
    own WebSocket loop, which rollcall does not run: the session's WebSocket is handed to
    ``EngineServer.websocket_handed`` instead, and the request returns at once."""

    def __init__(self, handler: Any, server: EngineServer) -> None:
        self.server = server

    async def __call__(self, environ: dict[str, Any]) -> None:
        handler = _serving.get()
        sid = handler.sid
        if sid is not None:
            self.server.websocket_handed(handler, sid)


def _valid_payload(body: bytes, limit: int) -> list[str] | None:
    """A long-polling POST body's frames, if it is a well-formed Engine.IO v4 payload."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return None
    frames = text.split(RECORD_SEPARATOR)
    if len(frames) > limit:
        return None
    for frame in frames:
        if frame.startswith(BINARY_PREFIX):
            try:
                base64.b64decode(frame[1:], validate=True)
            except binascii.Error:
                return None
        elif not valid_frame(frame, CLIENT_PACKET_TYPES):
            return None
    return frames


def _is_upgrade(headers: tornado.httputil.HTTPHeaders) -> bool:
    """Whether a request asks to switch to the WebSocket protocol (Tornado's own test)."""
    if headers.get("Upgrade", "").lower() != WEBSOCKET:
        return False
    tokens = headers.get("Connection", "").split(",")
    return "upgrade" in (token.strip().lower() for token in tokens)


def _offers_deflate(headers: tornado.httputil.HTTPHeaders) -> bool:
    """Whether a WebSocket handshake offers permessage-deflate (which Tornado then accepts when
    ``get_compression_options`` returns options)."""
    offers = headers.get("Sec-WebSocket-Extensions", "")
    return any(offer.split(";")[0].strip() == "permessage-deflate" for offer in offers.split(","))


class _Exchange:
    """What rollcall keeps of one request beside Tornado's handler, in one object rather than
    as attributes of the handler: past 30 attribute names, Python stops sharing an instance
    dict's keys between the instances of a class, and an open WebSocket's handler already has
    27 of Tornado's, so rollcall's own five gave every open WebSocket's handler a dict of its
    own (1,584 bytes instead of 832 traced: docs/benchmarks.md)."""

    __slots__ = ("close_on_open", "compressing", "kind", "reservation", "sid", "transport",
                 "upgrades")

    def __init__(self) -> None:
        #: the request's Engine.IO sid (the query's; a new WebSocket's, once its session opens)
        self.sid: str | None = None
        #: the query's transport, once prepare() validated it
        self.kind: str | None = None
        #: whether this WebSocket upgrades a polling session (its request named the sid)
        self.upgrades = False
        #: whether this WebSocket compresses (permessage-deflate offered and allowed)
        self.compressing = False
        #: the client address whose place (EngineServer.reserve) this handshake holds until
        #: its session takes it
        self.reservation: str | None = None
        #: (code, reason) when this WebSocket is accepted only to be closed
        self.close_on_open: tuple[int, str] | None = None
        #: the session's transport, once python-engineio handed the WebSocket over
        self.transport: WebSocketTransport | None = None


def engine_handler(eio: EngineServer) -> type[tornado.websocket.WebSocketHandler]:
    """A Tornado handler for ``eio``: requests validated, then served by python-engineio."""
    max_packets = engineio.payload.Payload.max_decode_packets

    class EngineHandler(tornado.websocket.WebSocketHandler):
        _exchange: _Exchange

        def initialize(self) -> None:
            """rollcall's state of this request, in one attribute (see ``_Exchange``)."""
            self._exchange = _Exchange()

        @property
        def sid(self) -> str | None:
            """The request's Engine.IO sid (the query's; a new WebSocket's, once its session
            opens)."""
            return self._exchange.sid

        @property
        def upgrades(self) -> bool:
            """Whether this WebSocket upgrades a polling session (its request named the sid)."""
            return self._exchange.upgrades

        @property
        def compressing(self) -> bool:
            """Whether this WebSocket compresses (permessage-deflate offered and allowed)."""
            return self._exchange.compressing

        @property
        def transport(self) -> WebSocketTransport | None:
            """The session's transport, once python-engineio handed the WebSocket over."""
            return self._exchange.transport

        @transport.setter
        def transport(self, transport: WebSocketTransport) -> None:
            self._exchange.transport = transport

        def _refuse(self, message: str, status: int = HTTP_BAD_REQUEST) -> None:
            self.set_status(status)
            self.set_header("Content-Type", "text/plain")
            self.finish(message)

        async def prepare(self) -> None:
            """Refuse what the Engine.IO spec refuses before python-engineio sees the request,
            every WebSocket python-engineio would refuse before its 101, and take a new
            session's place under the per-address limit."""
            request = self.request
            # one object for the clients of one address (a school behind one NAT): the
            # request, its environ and the per-address count all hold it
            request.remote_ip = _shared(request.remote_ip)
            if request.method not in ALLOWED_METHODS:
                return self._refuse("Invalid method")
            args = request.query_arguments
            if args.get("EIO") != [EIO_VERSION.encode()]:
                return self._refuse("Unsupported protocol version")
            transport = args.get("transport", [b""])[0].decode("latin-1")
            if transport not in TRANSPORTS or transport not in eio.transports:
                return self._refuse("Invalid transport")
            # the constant, not the query's copy: an open WebSocket keeps it
            self._exchange.kind = WEBSOCKET if transport == WEBSOCKET else POLLING
            sid = args.get("sid", [b""])[0].decode("latin-1") or None
            self._exchange.sid = sid
            if request.method == "POST" and sid is None:
                return self._refuse("Invalid session")
            if request.method == "GET" and (transport == WEBSOCKET) != _is_upgrade(
                request.headers
            ):
                return self._refuse("Invalid websocket upgrade")
            if sid is not None:
                await eio.expire_if_silent(sid)
            if transport == WEBSOCKET:
                return self._prepare_websocket(sid)
            if request.method == "GET" and sid is None and not self._reserve():
                return None
            return None

        def _reserve(self) -> bool:
            if not eio.admission.admit():
                self.set_header("Connection", "close")  # its descriptor back at once
                self._refuse("Server at capacity", HTTP_SERVICE_UNAVAILABLE)
                return False
            address = self.request.remote_ip
            if not eio.reserve(address):
                self._refuse("Too many connections from this address", HTTP_TOO_MANY_REQUESTS)
                return False
            self._exchange.reservation = address
            return True

        def _prepare_websocket(self, sid: str | None) -> None:
            if "j" in self.request.query_arguments:
                return self._refuse("Invalid JSONP index number")
            self._exchange.compressing = (eio.websocket_compression
                                          and _offers_deflate(self.request.headers))
            if sid is None:
                self._reserve()
                return None
            live = eio.sessions.get(sid)
            if live is None or live.session.closed:
                return self._refuse("Invalid session")
            if live.session.phase is not Phase.POLLING:
                # as the reference server does: accepted, then closed
                self._exchange.close_on_open = (WS_POLICY_VIOLATION, "session already upgraded")
            self._exchange.upgrades = True
            return None

        def claim_reservation(self, sid: str) -> str | None:
            """Hand this handshake's place over to its session `sid` (session_opened)."""
            exchange = self._exchange
            if exchange.sid is None:
                exchange.sid = sid
            address, exchange.reservation = exchange.reservation, None
            return address

        def _release_reservation(self) -> None:
            exchange = self._exchange
            address, exchange.reservation = exchange.reservation, None
            if address is not None:
                eio.release(address)

        def on_finish(self) -> None:
            self._release_reservation()

        def on_close(self) -> None:
            if self.transport is not None:
                self.transport.feed(None)
            self._release_reservation()

        async def _serve(self) -> None:
            """Have python-engineio handle this request, knowing which handler it is."""
            token = _serving.set(self)
            try:
                await eio.handle_request(self)
            finally:
                _serving.reset(token)

        def get(self, *args: Any, **kwargs: Any) -> Awaitable[None]:
            if self._exchange.kind == WEBSOCKET:
                # Tornado's handshake (HTTP 101, or its own refusal), then open(), then its
                # frame loop for the connection's life, awaited by the request itself (returned,
                # not awaited here: one coroutine frame less for each open WebSocket)
                return super().get(*args, **kwargs)
            return self._poll()

        async def _poll(self) -> None:
            sid = self.sid
            if sid is None:
                try:
                    await self._serve()
                finally:
                    if self.sid is not None:  # the handshake opened a session
                        eio.handshake_answered(self.sid)
                return
            live = eio.sessions.get(sid)
            if live is not None and live.session.poll() is Poll.REFUSE:
                self._refuse("Unexpected HTTP request")
            elif sid in eio.polling:
                # a second concurrent poll is a client error: refuse it and end the session
                self._refuse("Overlapping poll")
                await eio.close_session(sid, eio.reason.TRANSPORT_ERROR)
            elif live is None and eio.take_owed_noop(sid):
                self.set_header("Content-Type", "text/plain; charset=UTF-8")
                self.finish(NOOP_RESPONSE)
            else:
                eio.polling.add(sid)
                try:
                    await self._serve()
                finally:
                    eio.polling.discard(sid)

        async def open(self, *args: Any, **kwargs: Any) -> None:
            """The WebSocket is open: python-engineio makes or finds its session and hands it
            over (``_HandOff``); one it does not hand over is closed at once."""
            close_on_open = self._exchange.close_on_open
            if close_on_open is not None:
                self.close(*close_on_open)
                return
            await self._serve()
            self._forget_handshake()
            if self.transport is None:
                self.close(WS_POLICY_VIOLATION, "no Engine.IO session")

        def _forget_handshake(self) -> None:
            """Drop what the handshake left, since the handler and its request live as long as
            the connection (measured in docs/benchmarks.md), each through Tornado's public
            names. An emptied dict keeps its table, so dicts are replaced rather than emptied:

            - the request's query (prepare() read it; the environ holds what is read later),
              its body's arguments and files (a WebSocket's request has no body): one shared
              read-only empty mapping instead of an empty dict each;
            - the request's headers, re-initialised in place through their constructor, which
              gives them new empty tables (Tornado's frame of ``get`` holds the same object);
            - the 101's headers, written by now: ``clear()`` gives the response new headers
              (Tornado's three defaults, then cleared). It sets the status to 200 as well, which
              Tornado does not let a WebSocket's handler set back, and reads only to break its
              reference cycles, once the connection has closed, whatever the status;
            - the request's HTTP connection and server connection (documented attributes,
              which nothing reads once the WebSocket took the stream): they were all that still
              held Tornado's HTTP/1 objects of the handshake, the finished request loop's task
              and the connection's context (~1.2 KB);
            - the request line's and the host's texts, the same for most WebSockets, are held
              once for all (``_shared``) instead of once each;
            - the handler's path arguments (Tornado reads them only to call ``get``) and its
              ``ui`` namespace for templates, which a WebSocket never renders (Tornado drops it
              itself once the connection has closed).
            """
            request = self.request
            for name in SHARED_REQUEST_TEXTS:
                setattr(request, name, _shared(getattr(request, name)))
            tornado.httputil.HTTPHeaders.__init__(request.headers)
            request.query_arguments = NO_ARGUMENTS  # type: ignore[assignment]
            request.arguments = NO_ARGUMENTS  # type: ignore[assignment]
            request.body_arguments = NO_ARGUMENTS  # type: ignore[assignment]
            request.files = NO_ARGUMENTS  # type: ignore[assignment]
            request.connection = None
            request.server_connection = None
            self.clear()
            for name in DEFAULT_RESPONSE_HEADERS:
                self.clear_header(name)
            self.path_args = NO_PATH_ARGS  # type: ignore[assignment]
            self.path_kwargs = NO_ARGUMENTS  # type: ignore[assignment]
            self.ui = None

        def on_message(self, message: str | bytes) -> None:
            if self.transport is not None:
                self.transport.feed(message)

        def check_origin(self, origin: str) -> bool:
            """python-engineio's ``cors_allowed_origins`` as it documents it (None: the same
            host, Tornado's rule; "*" or []: any; a string, a list or a callable), checked by
            Tornado before the 101 (403), where python-engineio would check it after."""
            allowed = eio.cors_allowed_origins
            if allowed is None:
                return super().check_origin(origin)
            if allowed in ("*", []):
                return True
            if callable(allowed):
                return bool(allowed(origin))
            return origin == allowed if isinstance(allowed, str) else origin in allowed

        def get_compression_options(self) -> dict[str, Any] | None:
            """No permessage-deflate unless the server was built with ``websocket_compression``,
            as the reference server's default: with context takeover each compressing
            connection holds a zlib compressor and decompressor on the server for its whole life
            (measured in docs/benchmarks.md), and a compressing client (Node's ws) delays every
            frame by a trip through zlib's thread pool, so its "5" came after a poll it sent
            later. With it, Tornado's defaults apply."""
            return {} if eio.websocket_compression else None

        async def options(self, *args: Any, **kwargs: Any) -> None:
            await self._serve()

        async def post(self, *args: Any, **kwargs: Any) -> None:
            sid = self.sid
            assert sid is not None  # prepare() refused a POST without one
            live = eio.sessions.get(sid)
            if live is not None and not live.session.may_post():
                return self._refuse("Unexpected HTTP request")
            frames = _valid_payload(self.request.body, max_packets)
            if live is not None and frames is None:
                self._refuse("Invalid payload")
                await eio.close_session(sid, eio.reason.TRANSPORT_ERROR)
                return None
            if live is not None and frames is not None and PONG_TYPE in frames:
                eio.pong(sid)
            await self._serve()
            if live is not None and sid not in eio.sessions:
                # A client CLOSE: the poll that races it, pending or arriving right after, is
                # answered with a NOOP (as the reference server does) instead of hanging or
                # failing; the ones after it get 400 (python-engineio forgets the session).
                if sid in eio.polling:
                    live.outbox.put_nowait(eio_packet.Packet(eio_packet.NOOP))
                else:
                    eio.owe_noop(sid)
            return None

        def write(self, chunk: str | bytes | dict[str, Any]) -> None:
            """The Engine.IO spec answers a POST with ``ok``; python-engineio writes ``OK``."""
            if chunk == ENGINEIO_POST_ANSWER and self.request.method == "POST":
                chunk = POST_ANSWER
            super().write(chunk)

    return EngineHandler
