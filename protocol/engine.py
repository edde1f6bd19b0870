"""The python-engineio / Tornado boundary, and the Engine.IO v4 conformance fixes made there.

python-engineio 4.15 is used as is; the gaps the Socket.IO conformance suite exposes are closed
from the outside: a subclass of :class:`engineio.AsyncServer` (handshake values, ``ok`` answer,
prompt close) and a subclass of its Tornado handler (request validation before python-engineio
sees the request). See docs/protocol.md for the full gap table.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import time
from typing import Any

import engineio
import tornado.websocket
from engineio import packet as eio_packet
from engineio.async_drivers import tornado as eio_tornado

from .versions import require

#: the python-engineio series whose internals this module was written against and tested with
#: (``_ok``, ``create_queue``, the Tornado handler's ``receive_queue``)
ENGINEIO_SERIES = (4, 15)
require("python-engineio", ENGINEIO_SERIES)

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
BINARY_PREFIX = "b"
NOOP_FRAME = "6"
HTTP_BAD_REQUEST = 400
HTTP_TOO_MANY_REQUESTS = 429
WS_PROTOCOL_ERROR = 1002  # RFC 6455 close code
UNLIMITED = 0

_log = logging.getLogger(__name__)


class _Outbox(asyncio.Queue):
    """A socket's send queue that writes the handshake intervals in exact milliseconds.

    python-engineio computes ``int(seconds) * 1000``, so 0.3 s would be announced as 0 ms.
    """

    def __init__(self, server: EngineServer) -> None:
        super().__init__()
        self._server = server

    def put_nowait(self, item: Any) -> None:
        if item is not None and item.packet_type == eio_packet.OPEN:
            server = self._server
            item.data["pingInterval"] = round(
                (server.ping_interval + server.ping_interval_grace_period) * 1000
            )
            item.data["pingTimeout"] = round(server.ping_timeout * 1000)
        super().put_nowait(item)


class EngineServer(engineio.AsyncServer):
    """python-engineio's server with the boundary fixes; always ``async_mode='tornado'``."""

    def __init__(self, max_connections_per_ip: int = UNLIMITED, **options: Any) -> None:
        options["async_mode"] = "tornado"
        super().__init__(**options)
        #: Engine.IO sids with a long-polling GET in flight (at most one each).
        self.polling: set[str] = set()
        #: open sessions one client address may hold; UNLIMITED (0) for no limit
        self.max_connections_per_ip = max_connections_per_ip
        #: the client address of every open session, and how many sessions each address holds
        self._addresses: dict[str, str] = {}
        self._per_address: dict[str, int] = {}
        #: python-engineio's background tasks still running (see start_background_task)
        self._background: set[asyncio.Task[Any]] = set()

    def admits(self, address: str) -> bool:
        """Whether `address` may open one more session under ``max_connections_per_ip``."""
        limit = self.max_connections_per_ip
        return limit == UNLIMITED or self.connections_from(address) < limit

    def connections_from(self, address: str) -> int:
        """How many open sessions `address` holds."""
        return self._per_address.get(address, 0)

    def session_opened(self, sid: str, environ: dict[str, Any]) -> None:
        """Count a new session against its client address (call from the connect event, which
        python-engineio fires exactly once per session).

        The address is Tornado's ``remote_ip`` (X-Real-IP behind a proxy when ``xheaders`` is
        on); python-engineio's environ always says 127.0.0.1.
        """
        address = environ["tornado.handler"].request.remote_ip
        self._addresses[sid] = address
        self._per_address[address] = self._per_address.get(address, 0) + 1

    def session_closed(self, sid: str) -> None:
        """Give the session's place back (call from the disconnect event, fired once whatever
        ends the session)."""
        address = self._addresses.pop(sid, None)
        if address is not None:
            left = self._per_address[address] - 1
            if left:
                self._per_address[address] = left
            else:
                del self._per_address[address]

    def start_background_task(self, target: Any, *args: Any, **kwargs: Any) -> asyncio.Task:
        """python-engineio's public hook for the tasks it starts (the heartbeat monitor, and
        each session's next PING, which sleeps ping_interval first): kept, so that shutdown()
        can end them instead of leaving them asleep past the server's end."""
        task = super().start_background_task(target, *args, **kwargs)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def shutdown(self) -> None:
        """Stop the heartbeat monitor (python-engineio's shutdown, which may run only once),
        then cancel and await every other task it started, e.g. each session's pending PING."""
        if self.service_task_handle is not None:
            await super().shutdown()
        tasks = [task for task in self._background if not task.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)

    def create_queue(self, *args: Any, **kwargs: Any) -> asyncio.Queue:
        return _Outbox(self)

    def _ok(self, packets=None, headers=None, jsonp_index=None):
        """The Engine.IO spec answers a POST with ``ok``; python-engineio sends ``OK``."""
        response = super()._ok(packets, headers, jsonp_index)
        if packets is None:
            response["response"] = b"ok"
        return response

    async def close_session(self, sid: str, reason: str) -> None:
        """Close an Engine.IO session now, without waiting for its queue to drain.

        The CLOSE packet is queued for the client; over WebSocket the writer is then told to
        stop, so the socket closes at once instead of after ping_interval + ping_timeout.
        """
        socket = self.sockets.get(sid)
        if socket is None or socket.closed or socket.closing:
            return
        await socket.close(wait=False, abort=False, reason=reason)
        if socket.upgraded:
            socket.queue.put_nowait(None)

    async def expire_if_silent(self, sid: str) -> None:
        """Enforce the heartbeat timeout now rather than on the next monitor sweep."""
        socket = self.sockets.get(sid)
        if socket is not None and not socket.closed and not socket.closing:
            last_ping = socket.last_ping
            if last_ping and time.time() - last_ping > self.ping_timeout:
                await socket.check_ping_timeout()


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


def engine_handler(eio: EngineServer) -> type[tornado.websocket.WebSocketHandler]:
    """A Tornado handler for ``eio``: python-engineio's own, with requests validated first."""
    base = eio_tornado.get_tornado_handler(eio)
    max_packets = engineio.payload.Payload.max_decode_packets

    class EngineHandler(base):  # type: ignore[misc, valid-type]
        _sid: str | None = None
        #: set once this WebSocket sent a frame that is not an Engine.IO packet
        _broken = False

        def _refuse(self, message: str, status: int = HTTP_BAD_REQUEST) -> None:
            self.set_status(status)
            self.set_header("Content-Type", "text/plain")
            self.finish(message)

        async def prepare(self) -> None:
            """Refuse what the Engine.IO spec refuses before python-engineio sees the request."""
            request = self.request
            if request.method not in ALLOWED_METHODS:
                return self._refuse("Invalid method")
            args = request.query_arguments
            if args.get("EIO") != [EIO_VERSION.encode()]:
                return self._refuse("Unsupported protocol version")
            transport = args.get("transport", [b""])[0].decode("latin-1")
            if transport not in TRANSPORTS or transport not in eio.transports:
                return self._refuse("Invalid transport")
            sid = args.get("sid", [b""])[0].decode("latin-1") or None
            self._sid = sid
            if request.method == "POST" and sid is None:
                return self._refuse("Invalid session")
            if request.method == "GET" and sid is None and not eio.admits(request.remote_ip):
                return self._refuse("Too many connections from this address",
                                    HTTP_TOO_MANY_REQUESTS)
            if sid is not None:
                await eio.expire_if_silent(sid)
            return None

        async def get(self, *args: Any, **kwargs: Any) -> None:
            sid = self._sid
            is_upgrade = self.request.headers.get("Upgrade", "").lower() == "websocket"
            if sid is None:
                await super().get(*args, **kwargs)
            elif is_upgrade:
                socket = eio.sockets.get(sid)
                if socket is None or socket.closed or socket.upgraded or socket.upgrading:
                    return self._refuse("Invalid upgrade")
                await super().get(*args, **kwargs)
            elif sid in eio.polling:
                # a second concurrent poll is a client error: refuse it and end the session
                self._refuse("Overlapping poll")
                await eio.close_session(sid, eio.reason.TRANSPORT_ERROR)
            else:
                eio.polling.add(sid)
                try:
                    await super().get(*args, **kwargs)
                finally:
                    eio.polling.discard(sid)
            return None

        async def post(self, *args: Any, **kwargs: Any) -> None:
            sid = self._sid
            assert sid is not None  # prepare() refused a POST without one
            socket = eio.sockets.get(sid)
            if socket is not None and not _valid_payload(self.request.body, max_packets):
                self._refuse("Invalid payload")
                await eio.close_session(sid, eio.reason.TRANSPORT_ERROR)
                return
            await super().post(*args, **kwargs)
            if socket is not None and socket.closed and sid in eio.polling:
                # a client CLOSE: answer the pending poll with a noop instead of letting it hang
                socket.queue.put_nowait(eio_packet.Packet(eio_packet.NOOP))

        def on_message(self, message: str | bytes) -> None:
            """Refuse a WebSocket frame python-engineio's reader would die on (see
            ``_valid_frame``): close the WebSocket with 1002 and end the session, as if the
            client had closed, instead of leaving a session whose frames nobody reads.

            Synchronous on the hot path: the receive queue is unbounded, so python-engineio's
            ``await queue.put`` never waits."""
            if self._broken:
                return
            if isinstance(message, str) and not _valid_frame(message, WEBSOCKET_PACKET_TYPES):
                self._broken = True
                _log.info("closing a WebSocket that sent %r, not an Engine.IO packet",
                          message[:16])
                self.close(WS_PROTOCOL_ERROR, "invalid Engine.IO packet")
                self.receive_queue.put_nowait(None)  # the reader ends the session now
                return
            self.receive_queue.put_nowait(message)

        def write_message(self, message: str | bytes | dict, binary: bool = False):
            """Drop the NOOP python-engineio queues to end the last poll of an upgrade: when no
            poll was pending it would otherwise leak onto the new WebSocket."""
            if message == NOOP_FRAME:
                return None
            return super().write_message(message, binary=binary)

    return EngineHandler
