"""Socket.IO v5 server on python-engineio: namespaces, dispatch, acks, sessions, disconnects.

The surface mirrors python-socketio's ``AsyncServer`` so handlers port unchanged; the internals
are a thin loop around the pure codec in :mod:`protocol.packet`. Rooms and who an emit reaches
belong to the client manager (:mod:`protocol.manager`).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import secrets
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import tornado.websocket
from engineio import packet as eio_packet

from . import eager
from .engine import EngineServer, KeptEnviron, engine_handler
from .manager import Manager, as_args
from .packet import (
    DEFAULT_MAX_ATTACHMENTS,
    ROOT_NAMESPACE,
    Decoder,
    Packet,
    PacketType,
    ProtocolError,
    encode,
)

__all__ = ["ConnectionRefusedError", "Server", "get_tornado_handler"]

_log = logging.getLogger(__name__)

DEFAULT_REFUSAL = "Connection rejected by server"
INVALID_NAMESPACE = "Invalid namespace"
#: The longest unknown namespace a CONNECT_ERROR names back; a CONNECT to a longer one closes the
#: session instead (it cannot be a namespace of this server, and echoing it would let a client
#: make the server queue up to --max-payload per packet).
MAX_ECHOED_NAMESPACE = 128
#: CONNECT packets one Engine.IO session may send in its life (accepted or not): enough for a
#: client that joins a few namespaces and rejoins them now and then, not for one that churns
#: Socket.IO sids with 41/40 to reset what is kept per sid. The next one closes the session.
DEFAULT_MAX_CONNECTS = 100
#: How much of a reason to close a client the log line keeps (reasons may quote client text).
LOGGED_REASON_LENGTH = 200
SID_BYTES = 15  # 20 url-safe characters, like the reference server's ids


class ConnectionRefusedError(ConnectionError):
    """Raise from a connect handler to refuse: ``ConnectionRefusedError(message, data)``."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.error_args: dict[str, Any] = {"message": str(args[0]) if args else DEFAULT_REFUSAL}
        if len(args) == 2:
            self.error_args["data"] = args[1]
        elif len(args) > 2:
            self.error_args["data"] = list(args[1:])


class Reason:
    """Disconnect reasons passed to ``disconnect`` handlers (python-socketio's strings)."""

    SERVER_DISCONNECT = EngineServer.reason.SERVER_DISCONNECT
    CLIENT_DISCONNECT = EngineServer.reason.CLIENT_DISCONNECT
    PING_TIMEOUT = EngineServer.reason.PING_TIMEOUT
    TRANSPORT_CLOSE = EngineServer.reason.TRANSPORT_CLOSE
    TRANSPORT_ERROR = EngineServer.reason.TRANSPORT_ERROR
    PARSE_ERROR = "parse error"


@dataclass(slots=True, eq=False)
class _Handler:
    func: Callable[..., Any]
    is_async: bool
    arity: int  # positional parameters it accepts (a large number for *args)

    @classmethod
    def wrap(cls, func: Callable[..., Any]) -> _Handler:
        params = inspect.signature(func).parameters.values()
        if any(p.kind is p.VAR_POSITIONAL for p in params):
            arity = 1 << 16
        else:
            arity = sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params)
        return cls(func, inspect.iscoroutinefunction(func), arity)

    async def __call__(self, *args: Any) -> Any:
        result = self.func(*args)
        return await result if self.is_async else result

    async def lenient(self, *args: Any) -> Any:
        """Call with only the arguments it takes: ``connect(sid, environ)`` and
        ``disconnect(sid)`` from older python-socketio code keep working."""
        return await self(*args[: self.arity])


class _Call:
    """The ack callback behind ``Server.call``: resolves a future, or fails it on disconnect."""

    __slots__ = ("future",)

    def __init__(self) -> None:
        self.future: asyncio.Future[tuple[Any, ...]] = asyncio.get_running_loop().create_future()

    def __call__(self, *args: Any) -> None:
        if not self.future.done():
            self.future.set_result(args)

    def fail(self) -> None:
        if not self.future.done():
            self.future.set_exception(ConnectionError("the client disconnected"))


@dataclass(slots=True, eq=False)
class _Socket:
    """One client's membership of one namespace (what socket.io-client calls a socket)."""

    sid: str
    eio_sid: str
    namespace: str
    #: frames emitted while the connect handler runs; sent after the CONNECT reply
    held: list[str | bytes] | None = field(default_factory=list)
    #: ack callbacks awaited, by ack id; made on the first (most sockets never await one)
    acks: dict[int, Callable[..., Any]] | None = None
    next_ack: int = 0
    session: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True, eq=False)
class _Client:
    """One Engine.IO session and the namespaces it joined."""

    eio_sid: str
    #: the handshake's environ, for the connect handler of each namespace joined
    environ: KeptEnviron
    decoder: Decoder
    sockets: dict[str, _Socket] = field(default_factory=dict)
    connect_timer: asyncio.TimerHandle | None = None
    #: CONNECT packets received so far
    connects: int = 0


def _call_result(args: tuple[Any, ...]) -> Any:
    if not args:
        return None
    return args[0] if len(args) == 1 else args


class Server:
    """A Socket.IO v5 server; mount it with :func:`get_tornado_handler`.

    Engine.IO options (``ping_interval``, ``ping_timeout``, ``max_http_buffer_size``,
    ``cors_allowed_origins``, ...) pass through to python-engineio, and
    ``max_connections_per_ip``, ``max_connections``, ``max_session_output`` and
    ``websocket_compression`` to :class:`EngineServer`; ``async_mode`` is always
    ``'tornado'``. ``max_connects``: CONNECT packets one Engine.IO session may send before it
    is closed. Event handlers run as tasks of their own once they wait for anything
    (``async_handlers=True``; see protocol/eager.py) so a handler that awaits the same client's
    ack cannot block its own reader.

    Rooms and emits go through ``client_manager``: a :class:`~protocol.manager.Manager` (this
    process only) unless another is given, e.g. a :class:`~protocol.relay.RelayManager`.
    """

    reason = Reason

    def __init__(
        self,
        namespaces: Iterable[str] | None = None,
        connect_timeout: float = 45,
        max_attachments: int = DEFAULT_MAX_ATTACHMENTS,
        max_connects: int = DEFAULT_MAX_CONNECTS,
        async_handlers: bool = True,
        logger: logging.Logger | None = None,
        engineio_logger: logging.Logger | bool = False,
        client_manager: Manager | None = None,
        **engineio_options: Any,
    ) -> None:
        engineio_options.pop("async_mode", None)
        # dispatch is ours: python-engineio would add a task per message on top of ours
        engineio_options["async_handlers"] = False
        self.eio = EngineServer(logger=engineio_logger, **engineio_options)
        self.eio.on("connect", self._on_engine_connect)
        self.eio.on("message", self._on_engine_message)
        self.eio.on("disconnect", self._on_engine_disconnect)
        self.connect_timeout = connect_timeout
        self.max_attachments = max_attachments
        self.max_connects = max_connects
        self.async_handlers = async_handlers
        self.logger = logger or _log
        self.manager = Manager() if client_manager is None else client_manager
        self.manager.attach(self)
        self._handlers: dict[str, dict[str, _Handler]] = {}
        for namespace in namespaces or [ROOT_NAMESPACE]:
            self._declare(namespace)
        self._clients: dict[str, _Client] = {}
        self._sockets: dict[str, _Socket] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        #: False once refuse_sessions() was called (a shutdown)
        self.accepting_sessions = True

    def _declare(self, namespace: str) -> None:
        if not namespace.startswith("/") or "," in namespace:
            raise ValueError(f"invalid namespace {namespace!r}")
        self.manager.add_namespace(namespace)
        self._handlers.setdefault(namespace, {})

    # -- registration -----------------------------------------------------------------------

    def on(
        self, event: str, handler: Callable[..., Any] | None = None, namespace: str | None = None
    ) -> Callable[..., Any]:
        """Register ``handler`` for ``event`` (usable as a decorator). Declares the namespace."""
        ns = namespace or ROOT_NAMESPACE

        def register(func: Callable[..., Any]) -> Callable[..., Any]:
            self._declare(ns)
            self._handlers[ns][event] = _Handler.wrap(func)
            return func

        return register(handler) if handler is not None else register

    def event(
        self, handler: Callable[..., Any] | None = None, namespace: str | None = None
    ) -> Callable[..., Any]:
        """Decorator registering a function under its own name: ``@sio.event``."""
        if handler is not None:
            return self.on(handler.__name__, handler, namespace)
        return lambda func: self.on(func.__name__, func, namespace)

    # -- sending ------------------------------------------------------------------------------

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
        """Emit to a sid, a room, or (no target) everyone in the namespace.

        ``callback`` asks for an ack and needs a single connected sid of this process as the
        target (acks never cross processes); any other emit is the manager's to deliver.
        """
        target = to if to is not None else room
        if callback is not None:
            await self._emit_with_ack(event, data, target, namespace, callback)
            return
        await self.manager.emit(event, data, namespace, target, skip_sid)

    async def _emit_with_ack(
        self, event: str, data: Any, to: str | None, namespace: str, callback: Callable[..., Any]
    ) -> tuple[_Socket, int]:
        sock = self._sockets.get(to) if to is not None else None
        if sock is None or sock.namespace != namespace:
            raise ValueError("an ack callback needs one connected sid of that namespace as target")
        pid = sock.next_ack
        sock.next_ack = pid + 1
        frames = encode(Packet(PacketType.EVENT, namespace, [event, *as_args(data)], pid))
        if sock.acks is None:
            sock.acks = {}
        sock.acks[pid] = callback
        await self.deliver(sock.sid, frames)
        return sock, pid

    async def call(
        self,
        event: str,
        data: Any = None,
        to: str | None = None,
        sid: str | None = None,
        namespace: str = ROOT_NAMESPACE,
        timeout: float = 60,  # noqa: ASYNC109 - pinned python-socketio signature
    ) -> Any:
        """Emit to one sid and wait for its ack; returns the ack's argument (a tuple if several).

        Raises ``TimeoutError`` after ``timeout`` seconds and ``ConnectionError`` if the client
        disconnects first.
        """
        waiter = _Call()
        sock, pid = await self._emit_with_ack(event, data, to or sid, namespace, waiter)
        try:
            return _call_result(await asyncio.wait_for(waiter.future, timeout))
        finally:
            if sock.acks is not None:
                sock.acks.pop(pid, None)

    async def deliver(self, sid: str, frames: list[str | bytes]) -> None:
        """Send encoded frames to a socket of this process (the manager's way out); held while
        its connect handler runs, so they follow the CONNECT reply. A sid not here is ignored."""
        sock = self._sockets.get(sid)
        if sock is None:
            return
        if sock.held is not None:
            sock.held.extend(frames)
        else:
            await self._send(sock.eio_sid, frames)

    async def _send(self, eio_sid: str, frames: list[str | bytes]) -> None:
        for frame in frames:
            self.eio.push(eio_sid, eio_packet.Packet(eio_packet.MESSAGE, frame))

    # -- rooms and sessions -------------------------------------------------------------------

    async def enter_room(self, sid: str, room: str, namespace: str = ROOT_NAMESPACE) -> None:
        await self.manager.enter_room(sid, room, namespace)

    async def leave_room(self, sid: str, room: str, namespace: str = ROOT_NAMESPACE) -> None:
        await self.manager.leave_room(sid, room, namespace)

    async def close_room(self, room: str, namespace: str = ROOT_NAMESPACE) -> None:
        await self.manager.close_room(room, namespace)

    def rooms(self, sid: str, namespace: str = ROOT_NAMESPACE) -> list[str]:
        """The rooms ``sid`` is in (its own among them), as far as this process knows."""
        return self.manager.rooms(sid, namespace)

    def engine_sid(self, sid: str, namespace: str = ROOT_NAMESPACE) -> str | None:
        """The Engine.IO session id of ``sid`` in ``namespace`` (None if it is not a socket of
        this process there): what a client keeps across namespace reconnects, for limits that
        a new Socket.IO sid must not reset."""
        sock = self._sockets.get(sid)
        if sock is None or sock.namespace != namespace:
            return None
        return sock.eio_sid

    async def get_session(self, sid: str, namespace: str | None = None) -> dict[str, Any]:
        """The session dict of a connected sid (sids are unique across namespaces)."""
        return self._sockets[sid].session

    async def save_session(
        self, sid: str, session: dict[str, Any], namespace: str | None = None
    ) -> None:
        self._sockets[sid].session = session

    @asynccontextmanager
    async def session(self, sid: str, namespace: str | None = None) -> AsyncIterator[dict]:
        """``async with sio.session(sid) as s:`` — changes are saved on exit."""
        session = await self.get_session(sid)
        yield session
        await self.save_session(sid, session)

    # -- disconnecting ------------------------------------------------------------------------

    async def disconnect(self, sid: str, namespace: str = ROOT_NAMESPACE) -> None:
        """Make ``sid`` leave ``namespace``; the Engine.IO session itself stays up. A sid of
        another process is the manager's to reach."""
        if not await self.manager.can_disconnect(sid, namespace):
            return
        sock = self._sockets.get(sid)
        if sock is None or sock.namespace != namespace:
            return
        client = self._clients.get(sock.eio_sid)
        if client is not None:
            client.sockets.pop(namespace, None)
        await self._send(sock.eio_sid, encode(Packet(PacketType.DISCONNECT, namespace)))
        await self._drop(sock, self.reason.SERVER_DISCONNECT)

    async def close_all(self) -> None:
        """Close every Engine.IO session of this process (disconnect reason ``server
        disconnect``); each close runs the disconnect handlers of its sockets before it returns.
        A closed session, unlike a Socket.IO DISCONNECT, lets clients reconnect by themselves."""
        await self.close_sessions(self.session_ids())

    def refuse_sessions(self) -> None:
        """Answer every new Engine.IO handshake with HTTP 401 from now on (a shutdown, on an
        HTTP connection kept alive): the client's transport fails and it retries elsewhere or
        later, whereas after a Socket.IO CONNECT refused, socket.io-client gives up."""
        self.accepting_sessions = False

    def session_ids(self) -> list[str]:
        """The Engine.IO session ids open in this process, oldest first."""
        return list(self.eio.sessions)

    async def close_sessions(self, eio_sids: Iterable[str]) -> None:
        """Close these Engine.IO sessions as :meth:`close_all` closes all of them (an id no
        longer open is skipped): a shutdown closes them in batches."""
        reason = self.reason.SERVER_DISCONNECT
        await asyncio.gather(
            self.eio.finish_ends(),  # first: sessions whose client left close as such
            *(self.eio.close_session(eio_sid, reason) for eio_sid in eio_sids),
        )

    def connection_counts(self) -> dict[str, int]:
        """Open Engine.IO sessions by transport, ``polling`` or ``websocket`` (a session that
        upgraded counts as websocket)."""
        return self.eio.connection_counts()

    @property
    def output_limit_closes(self) -> int:
        """Sessions closed because their client left more than ``max_session_output`` unread."""
        return self.eio.output_limit_closes

    @property
    def refused_connections(self) -> int:
        """Handshakes refused (HTTP 503) because ``max_connections`` places were taken."""
        return self.eio.admission.refused

    async def shutdown(self) -> None:
        """Stop python-engineio's heartbeat monitor and every task it started, such as each
        session's pending PING (call after close_all, before stopping the web server)."""
        await self.eio.shutdown()

    async def _drop(self, sock: _Socket, reason: str | None) -> None:
        """Forget a socket; call the disconnect handler if it had connected (reason not None)."""
        if self._sockets.pop(sock.sid, None) is None:
            return
        self.manager.remove_sid(sock.sid, sock.namespace)
        acks, sock.acks = sock.acks, None
        for ack in (acks or {}).values():
            if isinstance(ack, _Call):
                ack.fail()
        handler = self._handlers[sock.namespace].get("disconnect")
        if handler is not None and reason is not None and sock.held is None:
            try:
                await handler.lenient(sock.sid, reason)
            except Exception:
                self.logger.exception("disconnect handler of %s failed", sock.namespace)

    async def _close_client(self, client: _Client, why: str) -> None:
        self.logger.info("closing %s: %s", client.eio_sid, why[:LOGGED_REASON_LENGTH])
        await self.eio.close_session(client.eio_sid, self.reason.PARSE_ERROR)

    # -- Engine.IO events ---------------------------------------------------------------------

    def _on_engine_connect(self, eio_sid: str, environ: dict[str, Any]) -> bool:
        if not self.accepting_sessions:
            return False  # python-engineio answers the handshake 401 and forgets the session
        # a binary packet's attachments together: no larger than one message may be
        decoder = Decoder(self.max_attachments, self.eio.max_http_buffer_size)
        client = _Client(eio_sid, KeptEnviron(environ), decoder)
        self._clients[eio_sid] = client
        client.connect_timer = asyncio.get_running_loop().call_later(
            self.connect_timeout, self._connect_timed_out, client
        )
        # last: a session python-engineio refuses (if this raised) never takes its place
        self.eio.session_opened(eio_sid)
        return True

    def _connect_timed_out(self, client: _Client) -> None:
        client.connect_timer = None
        if self._clients.get(client.eio_sid) is client and not any(
            s.held is None for s in client.sockets.values()
        ):
            self._spawn(self._close_client(client, "no namespace joined in time"))

    async def _on_engine_disconnect(self, eio_sid: str, reason: str) -> None:
        reason = self.eio.session_closed(eio_sid, reason)
        client = self._clients.pop(eio_sid, None)
        if client is None:
            return
        if client.connect_timer is not None:
            client.connect_timer.cancel()
        client.decoder.reset()
        for sock in list(client.sockets.values()):
            await self._drop(sock, reason)
        client.sockets.clear()

    async def _on_engine_message(self, eio_sid: str, data: Any) -> None:
        client = self._clients.get(eio_sid)
        if client is None:
            return
        try:
            pkt = client.decoder.feed(data)
        except ProtocolError as exc:
            await self._close_client(client, str(exc))
            return
        if pkt is None:
            pending = client.decoder.pending_namespace
            if pending is not None and not self._joined(client, pending):
                # refused from its header, before any attachment is buffered
                await self._close_client(client, f"binary packet for {pending} not joined")
            return
        if pkt.type is PacketType.CONNECT:
            await self._connect(client, pkt)
            return
        sock = client.sockets.get(pkt.namespace)
        if sock is None or sock.held is not None:
            await self._close_client(client, f"{pkt.type.name} for {pkt.namespace} not joined")
        elif pkt.type is PacketType.EVENT:
            run = self._event(sock, pkt)
            if run is None:
                pass
            elif self.async_handlers:
                eager.start(run, self._tasks)
            else:
                await run
        elif pkt.type is PacketType.ACK:
            await self._acknowledged(sock, pkt)
        elif pkt.type is PacketType.DISCONNECT:
            del client.sockets[pkt.namespace]
            await self._drop(sock, self.reason.CLIENT_DISCONNECT)
        else:  # CONNECT_ERROR only ever flows server -> client
            await self._close_client(client, f"unexpected {pkt.type.name}")

    @staticmethod
    def _joined(client: _Client, namespace: str) -> bool:
        """Whether the client has joined `namespace` (its connect handler has accepted it)."""
        sock = client.sockets.get(namespace)
        return sock is not None and sock.held is None

    async def _connect(self, client: _Client, pkt: Packet) -> None:
        namespace = pkt.namespace
        client.connects += 1
        if client.connects > self.max_connects:
            await self._close_client(client, f"more than {self.max_connects} CONNECT packets")
            return
        if namespace in client.sockets:
            await self._close_client(client, f"second CONNECT to {namespace}")
            return
        if namespace not in self._handlers:
            if len(namespace) > MAX_ECHOED_NAMESPACE:
                await self._close_client(client, "CONNECT to an unknown namespace that long")
                return
            refusal = Packet(PacketType.CONNECT_ERROR, namespace, {"message": INVALID_NAMESPACE})
            await self._send(client.eio_sid, encode(refusal))
            return
        sid = secrets.token_urlsafe(SID_BYTES)
        sock = _Socket(sid, client.eio_sid, namespace)
        client.sockets[namespace] = sock
        self._sockets[sid] = sock
        self.manager.add_sid(sid, namespace)
        error = await self._run_connect_handler(sock, client.environ.unpack(), pkt.data)
        if self._sockets.get(sid) is not sock:
            return  # the client went away (or was disconnected) while the handler ran
        if error is not None:
            client.sockets.pop(namespace, None)
            await self._drop(sock, None)
            await self._send(
                client.eio_sid, encode(Packet(PacketType.CONNECT_ERROR, namespace, error))
            )
            return
        held, sock.held = sock.held or [], None
        if client.connect_timer is not None:
            client.connect_timer.cancel()
            client.connect_timer = None
        await self._send(
            client.eio_sid, encode(Packet(PacketType.CONNECT, namespace, {"sid": sid})) + held
        )

    async def _run_connect_handler(
        self, sock: _Socket, environ: dict[str, Any], auth: Any
    ) -> dict[str, Any] | None:
        """Run the connect handler; return the CONNECT_ERROR payload if it refused."""
        handler = self._handlers[sock.namespace].get("connect")
        if handler is None:
            return None
        try:
            accepted = await handler.lenient(sock.sid, environ, auth)
        except ConnectionRefusedError as exc:
            return exc.error_args
        except Exception:
            self.logger.exception("connect handler of %s failed", sock.namespace)
            return {"message": DEFAULT_REFUSAL}
        return {"message": DEFAULT_REFUSAL} if accepted is False else None

    def _event(self, sock: _Socket, pkt: Packet) -> Coroutine[Any, Any, None] | None:
        event, *args = pkt.data
        handler = self._handlers[sock.namespace].get(event)
        if handler is None:
            self.logger.debug("no handler for %r in %s", event, sock.namespace)
            return None
        return self._run_event(sock, handler, event, args, pkt.id)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_event(
        self, sock: _Socket, handler: _Handler, event: str, args: list[Any], pid: int | None
    ) -> None:
        try:
            result = handler.func(sock.sid, *args)
            if handler.is_async:
                result = await result
        except Exception:
            self.logger.exception("handler for %r in %s failed", event, sock.namespace)
            return
        if pid is not None and self._sockets.get(sock.sid) is sock:
            try:
                frames = encode(Packet(PacketType.ACK, sock.namespace, as_args(result), pid))
            except ProtocolError:
                self.logger.exception("handler for %r returned an unencodable ack", event)
                return
            await self._send(sock.eio_sid, frames)

    async def _acknowledged(self, sock: _Socket, pkt: Packet) -> None:
        callback = sock.acks.pop(pkt.id, None) if sock.acks else None  # type: ignore[arg-type]
        if callback is None:
            return
        try:
            result = callback(*pkt.data)
            if inspect.isawaitable(result):
                await result
        except Exception:
            self.logger.exception("ack callback failed")


def get_tornado_handler(sio: Server) -> type[tornado.websocket.WebSocketHandler]:
    """The Tornado handler to mount at ``/socket.io/``."""
    return engine_handler(sio.eio)
