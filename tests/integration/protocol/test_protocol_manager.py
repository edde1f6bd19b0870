"""The server's client manager, and what the server offers its wiring instead of its engine:
`close_all()` and `connection_counts()` (and the engine's count of closed sessions)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import inspect
import sys
from collections.abc import AsyncIterator

import pytest
import tornado.httpclient
from tornado.http1connection import HTTP1Connection, HTTP1ServerConnection
from tornado.httputil import HTTPHeaders

from protocol import Server
from protocol.engine import DEFAULT_RESPONSE_HEADERS, SHARED_REQUEST_TEXTS
from protocol.manager import Manager, NotAttached
from protocol.redis_transport import RedisTransport
from protocol.relay import RelayManager
from tests.integration.protocol.conftest import PING_INTERVAL, Events
from tests.support.raw_peers import PollPeer, RawWebSocket, WsPeer

#: a Redis nothing listens on: the transport is built, never connected
UNREACHABLE = "redis://127.0.0.1:1"


def test_every_room_and_delivery_operation_is_relayed() -> None:
    """What the server hands its manager is a coroutine of Manager; the relaying manager must
    extend each, or an operation added later would silently stay in one process."""
    operations = {
        name
        for name, member in vars(Manager).items()
        if not name.startswith("_") and inspect.iscoroutinefunction(member)
    }
    assert {"emit", "enter_room", "leave_room", "close_room", "can_disconnect"} <= operations
    assert operations <= set(vars(RelayManager))


def test_a_manager_serves_one_server() -> None:
    manager = Manager()
    sio = Server(client_manager=manager)
    assert sio.manager is manager
    with pytest.raises(ValueError, match="another Server"):
        Server(client_manager=manager)


@pytest.mark.gen_test
async def test_a_relay_is_started_after_its_server_is_built() -> None:
    relay = RelayManager(RedisTransport(UNREACHABLE))
    try:
        with pytest.raises(NotAttached):
            await relay.start()
    finally:
        await relay.stop()


@pytest.mark.gen_test
async def test_a_room_change_for_a_sid_not_here_leaves_nothing_behind() -> None:
    """A handler that enters a room after its client left must not leave a member nothing
    would ever remove."""
    sio = Server()
    await sio.enter_room("gone", "lesson-1")
    assert sio.rooms("gone") == []
    assert not sio.manager.is_connected("gone", "/")
    await sio.leave_room("gone", "lesson-1")
    await sio.close_room("lesson-1", namespace="/not-served")


async def joined(peer: WsPeer | PollPeer) -> None:
    """Join the root namespace (the test server greets with an "auth" event)."""
    await peer.send("40")
    assert (await peer.recv()).startswith("40{")
    assert await peer.recv() == '42["auth",{}]'


@contextlib.asynccontextmanager
async def joined_websocket(url: str) -> AsyncIterator[WsPeer]:
    """A WebSocket client whose session is open and joined to the root namespace; closed at
    the end of the block."""
    peer = await WsPeer.open(url)
    try:
        assert (await peer.recv()).startswith("0{")
        await joined(peer)
        yield peer
    finally:
        peer.close()


async def still_echoes(peer: WsPeer) -> None:
    """The session still works: an event is echoed."""
    await peer.send('42["message","still here"]')
    assert (await peer.recv()).startswith('42["message-back"')


@pytest.mark.gen_test
async def test_close_all_ends_every_session_and_the_counts_follow(
    url: str, sio: Server, events: Events
) -> None:
    assert sio.connection_counts() == {"polling": 0, "websocket": 0}
    assert sio.eio.sessions_closed == 0
    websocket = await WsPeer.open(url)
    assert (await websocket.recv()).startswith("0{")
    polling = await PollPeer.open(url)
    try:
        for peer in (websocket, polling):
            await joined(peer)
        assert sio.connection_counts() == {"polling": 1, "websocket": 1}

        await sio.close_all()
        # the disconnect handlers have run by the time close_all returns
        reasons = [entry[3] for entry in events.log if entry[0] == "disconnect"]
        assert reasons == [sio.reason.SERVER_DISCONNECT] * 2
        assert sio.connection_counts() == {"polling": 0, "websocket": 0}
        assert sio.eio.sessions_closed == 2  # what heap.Collector counts
        assert await websocket.closed()
        assert await polling.closed()
    finally:
        websocket.close()


#: the coroutines of the tasks python-engineio starts: its heartbeat monitor, a session's next PING
#: what python-engineio runs in tasks of its own; each session's next PING is a timer instead
ENGINEIO_TASKS = frozenset({"AsyncServer._service_task", "AsyncSocket._send_ping"})


def engineio_tasks() -> list[str]:
    return [
        name
        for task in asyncio.all_tasks()
        if not task.done() and (name := task.get_coro().__qualname__) in ENGINEIO_TASKS
    ]


#: tasks python-engineio's own waits would add to every idle WebSocket session
PER_SESSION_WAITS = frozenset({
    "AsyncSocket._send_ping",
    "AsyncSocket._websocket_handler",
    "AsyncSocket._websocket_handler.<locals>.websocket_wait",
    "LeanQueue.get",
    "Outbox.get",
})


@pytest.mark.gen_test
async def test_an_idle_websocket_session_waits_without_tasks_of_its_own(url: str) -> None:
    """Idle memory (docs/benchmarks.md, issue 15): an open WebSocket session has no reader or
    writer of its own (Tornado's frame loop hands frames to it), and its next PING waits on the
    shared schedule, not in a task per wait."""
    async with joined_websocket(url):
        names = {task.get_coro().__qualname__ for task in asyncio.all_tasks() if not task.done()}
        assert not names & PER_SESSION_WAITS
        # the request's task, whose WebSocketHandler.get runs Tornado's frame loop: the
        # connection's one task
        assert "RequestHandler._execute" in names


@pytest.mark.gen_test
async def test_shutdown_ends_every_task_the_engine_started(url: str, sio: Server) -> None:
    """A session's next PING waits ping_interval on a timer (not a task per session);
    shutdown() must leave neither it nor the heartbeat monitor running past the server's end."""
    async with joined_websocket(url):
        assert engineio_tasks() == ["AsyncServer._service_task"]
        assert sio.eio.pending_pings == 1

        await sio.close_all()
        await sio.shutdown()

        assert engineio_tasks() == []
        assert sio.eio.pending_pings == 0


@pytest.mark.gen_test
async def test_one_shared_schedule_pings_every_session_past_a_closed_one(
    url: str, sio: Server
) -> None:
    """Every session's next PING is an entry of one schedule under one timer: the session
    first in it closing must not stop the PINGs of those after it, and each keeps its cycle."""
    first = await WsPeer.open(url)
    second = await WsPeer.open(url)
    try:
        for peer in (first, second):
            assert (await peer.recv()).startswith("0{")
            await joined(peer)
        assert sio.eio.pending_pings == 2
        first.close()  # the schedule's first entry goes; the timer armed for it stays
        for _ in range(3):  # three cycles, each answered, each PING rescheduling the next
            assert await asyncio.wait_for(second.inbox.get(), 2 * PING_INTERVAL) == "2"
            await second.send("3")
    finally:
        first.close()
        second.close()


@pytest.mark.gen_test
async def test_an_open_websocket_keeps_its_headers_only_in_the_environ(
    url: str, sio: Server
) -> None:
    """Tornado's parsed handshake headers are emptied once the WebSocket is open; the environ
    python-engineio and the connect handlers read keeps its own copy."""
    peer = await WsPeer.connect(
        tornado.httpclient.HTTPRequest(
            url.replace("http", "ws") + "?EIO=4&transport=websocket",
            headers={"User-Agent": "idle-test"},
        )
    )
    try:
        assert (await peer.recv()).startswith("0{")
        await joined(peer)
        ((sid, live),) = sio.eio.sessions.items()
        assert len(live.transport.handler.request.headers) == 0
        assert sio._clients[sid].environ.unpack()["HTTP_USER_AGENT"] == "idle-test"
    finally:
        peer.close()


@pytest.mark.gen_test
async def test_an_open_websocket_handler_keeps_no_query_and_shares_its_attribute_names(
    url: str, sio: Server
) -> None:
    """The handler lives as long as its WebSocket. Once it is open, it holds no parsed query
    (prepare() read it; replaced, not emptied, so no dict table is kept) and no instance dict
    of its own: rollcall keeps its state of the request in one attribute, so Python still
    shares the handler's attribute names between handlers (past 30 names each instance gets a
    whole dict, ~1.3 KB more per open WebSocket). The session still works after both."""
    async with joined_websocket(url) as peer:
        ((_, live),) = sio.eio.sessions.items()
        handler = live.transport.handler
        request = handler.request
        assert request.query_arguments == {} == request.arguments
        assert sys.getsizeof(request.query_arguments) <= sys.getsizeof({})
        attributes = vars(handler)
        assert sys.getsizeof(attributes) < sys.getsizeof(dict(attributes)), (
            f"the handler has a dict of its own: {len(attributes)} names, {sorted(attributes)}"
        )
        await still_echoes(peer)


@pytest.mark.gen_test
async def test_an_open_websocket_keeps_none_of_tornados_http_connection_objects(
    url: str, sio: Server, events: Events
) -> None:
    """Once a WebSocket is open, its request no longer holds Tornado's HTTP/1 connection of the
    handshake nor its server connection (with its finished request loop's task), and nothing
    else does: they are freed (~1.2 KB per open WebSocket, docs/benchmarks.md). The session
    still works and still ends when the client closes."""
    async with joined_websocket(url) as peer:
        ((_, live),) = sio.eio.sessions.items()
        handler = live.transport.handler
        request = handler.request
        assert request.connection is None
        assert request.server_connection is None
        gc.collect()
        http_objects = (HTTP1Connection, HTTP1ServerConnection)
        holders = [type(o).__name__ for o in gc.get_referrers(request.headers)
                   if isinstance(o, http_objects)]
        holders += [type(o).__name__ for o in gc.get_referrers(handler.ws_connection.stream)
                    if isinstance(o, http_objects)]
        assert holders == [], f"Tornado's HTTP objects of the handshake are still alive: {holders}"
        await still_echoes(peer)
    assert (await events.wait_for("disconnect"))[3] == Server.reason.TRANSPORT_CLOSE
    assert not sio.eio.sessions


@pytest.mark.gen_test
async def test_a_socket_holds_no_ack_table_until_it_awaits_an_ack(url: str, sio: Server) -> None:
    """Most sockets never await an ack from their client: their table of awaited acks is made
    by the first (~80 bytes less per idle socket), and it works as before from then on."""
    async with joined_websocket(url) as peer:
        (sock,) = sio._sockets.values()
        assert sock.acks is None
        call = asyncio.ensure_future(sio.call("question", 21, to=sock.sid, timeout=5))
        assert await peer.recv() == '420["question",21]'
        await peer.send('430["answer",42]')
        assert await call == ("answer", 42)
        assert sock.acks == {}


@pytest.mark.gen_test
async def test_the_engine_indexes_an_open_session_once(url: str, sio: Server) -> None:
    """Every index keyed by sid costs a dict entry per session: the engine keeps an open
    session in one (its sessions, beside python-engineio's own sockets), with the address whose
    place it holds on the session's own record, which gives the place back when it closes."""
    async with joined_websocket(url):
        ((sid, live),) = sio.eio.sessions.items()
        indexes = [name for name, value in vars(sio.eio).items()
                   if isinstance(value, dict) and sid in value]
        assert sorted(indexes) == ["sessions", "sockets"]  # rollcall's and python-engineio's
        assert live.address == live.transport.handler.request.remote_ip
        assert sio.eio.connections_from(live.address) == 1
    await sio.eio.close_session(sid, Server.reason.SERVER_DISCONNECT)
    assert sio.eio.connections_from(live.address) == 0


def _tables(headers: HTTPHeaders) -> list[dict]:
    """The dicts a headers object keeps its fields in (whatever Tornado names them)."""
    return [value for value in vars(headers).values() if isinstance(value, dict)]


@pytest.mark.gen_test
async def test_an_open_websockets_header_tables_are_freed(url: str, sio: Server) -> None:
    """An emptied dict keeps its table: once the WebSocket is open, its request's headers and
    its response's (the 101's) hold new small tables, not the emptied ones of the handshake
    (~0.6 KB per open WebSocket, docs/benchmarks.md). The session goes on."""
    async with joined_websocket(url) as peer:
        ((_, live),) = sio.eio.sessions.items()
        handler = live.transport.handler
        assert len(handler.request.headers) == 0
        request_tables = _tables(handler.request.headers)
        assert request_tables
        assert all(sys.getsizeof(table) == sys.getsizeof({}) for table in request_tables)
        (response,) = (v for v in vars(handler).values() if isinstance(v, HTTPHeaders))
        assert len(response) == 0
        three = {}
        for name in DEFAULT_RESPONSE_HEADERS:
            three[name] = name
        sizes = [sys.getsizeof(table) for table in _tables(response)]
        assert sizes and max(sizes) <= sys.getsizeof(three), sizes
        await still_echoes(peer)


@pytest.mark.gen_test
async def test_the_101_is_written_whole_before_its_headers_are_dropped(url: str) -> None:
    """The handler drops its 101's headers once the WebSocket is open: the client has them
    all (Tornado's and RFC 6455's), and the connection goes on."""
    raw = await RawWebSocket.open(url)
    try:
        assert raw.status == 101
        for name in ("server", "date", "upgrade", "connection", "sec-websocket-accept"):
            assert name in raw.headers, name
        assert (await raw.recv()).startswith("0{")
        await raw.send("40")
        assert (await raw.recv()).startswith("40{")
    finally:
        raw.close()


@pytest.mark.gen_test
async def test_two_websockets_environs_share_their_common_texts(url: str, sio: Server) -> None:
    """An environ lives as long as its WebSocket: it is kept as its values and its keys, one
    tuple of keys for the clients whose requests had the same headers, without the request's
    body; the header names and values two clients have in common are one object each, not a
    copy per connection; texts unique to one client (its WebSocket key) stay its own."""
    peers = [await WsPeer.open(url) for _ in range(2)]
    try:
        for peer in peers:
            assert (await peer.recv()).startswith("0{")
            await joined(peer)
        kept = [client.environ for client in sio._clients.values()]
        assert kept[0].keys is kept[1].keys  # one tuple of keys for both
        assert sys.getsizeof(kept[0].values) < sys.getsizeof(kept[0].unpack())
        first, second = (environ.unpack() for environ in kept)
        assert "wsgi.input" not in first
        assert first["HTTP_SEC_WEBSOCKET_KEY"] != second["HTTP_SEC_WEBSOCKET_KEY"]
        for key in ("HTTP_HOST", "HTTP_UPGRADE", "HTTP_SEC_WEBSOCKET_VERSION", "QUERY_STRING"):
            assert first[key] == second[key]
            assert first[key] is second[key]
        shared_keys = {id(k) for k in first if k.startswith("HTTP_")}
        assert shared_keys == {id(k) for k in second if k.startswith("HTTP_")}
    finally:
        for peer in peers:
            peer.close()


@pytest.mark.gen_test
async def test_two_open_websockets_share_their_requests_texts(url: str, sio: Server) -> None:
    """An open WebSocket's request and handler live as long as it: the texts two clients have
    in common (the request line's, the host's, the peer address) are one object each, their
    empty argument mappings one for both, and neither handler keeps its path arguments or a
    template namespace. Both sessions go on."""
    peers = [await WsPeer.open(url) for _ in range(2)]
    try:
        for peer in peers:
            assert (await peer.recv()).startswith("0{")
            await joined(peer)
        first, second = (live.transport.handler for live in sio.eio.sessions.values())
        for name in (*SHARED_REQUEST_TEXTS, "remote_ip"):
            mine, theirs = getattr(first.request, name), getattr(second.request, name)
            assert mine == theirs, name
            assert mine is theirs, name
        for name in ("query_arguments", "arguments", "body_arguments", "files"):
            mine, theirs = getattr(first.request, name), getattr(second.request, name)
            assert len(mine) == 0, name
            assert mine is theirs, name
        assert first.path_kwargs is second.path_kwargs
        for handler in (first, second):
            assert handler.path_args == ()
            assert handler.path_kwargs == {}
            assert handler.ui is None
        for peer in peers:
            await peer.send('42["message","still here"]')
            assert (await peer.recv()).startswith('42["message-back"')
    finally:
        for peer in peers:
            peer.close()
