"""One test per internal of another library that rollcall's production code uses (listed in
docs/architecture.md, "Other libraries' internals"), each exercising exactly that internal, and
named after it: a release that changes one fails the test named for it, saying what changed.
These replace the import-time version refusal; `make test-latest` runs them on the newest
releases. (aiopg's ``Connection._ready``, which needs PostgreSQL, is exercised by
tests/integration/resilience/test_aiopg_compat.py.)"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiopg
import engineio
import pytest
import tornado.httpserver
import tornado.httputil
import tornado.netutil
import tornado.web
import tornado.websocket
from engineio.async_socket import AsyncSocket
from engineio.payload import Payload

WEBSOCKET_HANDSHAKE = "/engine.io/?EIO=4&transport=websocket"
RECORD_SEPARATOR = "\x1e"


class _Handler:
    """What python-engineio's Tornado ``translate_request`` reads of a handler."""

    def __init__(self, uri: str) -> None:
        headers = tornado.httputil.HTTPHeaders(
            {"Host": "127.0.0.1", "Upgrade": "websocket", "Connection": "Upgrade"}
        )
        start_line = tornado.httputil.RequestStartLine("GET", uri, "HTTP/1.1")
        self.request = tornado.httputil.HTTPServerRequest(start_line=start_line, headers=headers)


class _Recording(engineio.AsyncServer):
    """python-engineio's server, recording what it hands its WebSocket driver and the tasks it
    starts (without starting them)."""

    def __init__(self, **options: Any) -> None:
        super().__init__(async_mode="tornado", **options)
        self.handed: list[tuple[Any, Any, dict[str, Any]]] = []
        self.started: list[Any] = []
        self.translated: list[tuple[Any, dict[str, Any]]] = []
        server = self
        assert "translate_request" in self._async, (
            "python-engineio's AsyncServer._async has no 'translate_request' entry any more: "
            "protocol/engine.py's translate_request (one body class for all requests) is unused"
        )
        translate = self._async["translate_request"]

        def translate_request(handler: Any) -> dict[str, Any]:
            environ = translate(handler)
            server.translated.append((handler, environ))
            return environ

        class Driver:
            def __init__(self, handler: Any, engine: Any) -> None:
                self.handler, self.engine = handler, engine

            async def __call__(self, environ: dict[str, Any]) -> None:
                server.handed.append((self.handler, self.engine, environ))

        assert "websocket" in self._async, (
            "python-engineio's AsyncServer._async has no 'websocket' entry any more: "
            "protocol/engine.py's _HandOff, which takes over each WebSocket, would never run"
        )
        self._async = {**self._async, "websocket": Driver, "translate_request": translate_request}

    def start_background_task(self, target: Any, *args: Any, **kwargs: Any) -> None:
        self.started.append(target)


def _open_websocket_session(**options: Any) -> _Recording:
    server = _Recording(**options)
    asyncio.run(server.handle_request(_Handler(WEBSOCKET_HANDSHAKE)))
    return server


def test_engineio_async_websocket_entry_is_handed_each_websocket() -> None:
    """python-engineio ``AsyncServer._async['websocket']``: a WebSocket it accepts is handed to
    the class in that entry, as ``Driver(session handler, server)`` then ``await
    driver(environ)``; protocol/engine.py's ``_HandOff`` takes the session over there."""
    server = _open_websocket_session()
    assert len(server.handed) == 1, (
        "python-engineio no longer calls its 'websocket' driver entry once per WebSocket "
        f"handshake (calls: {len(server.handed)}); rollcall's hand-off never runs"
    )
    _, engine, environ = server.handed[0]
    assert engine is server, "the driver is no longer given the server as its second argument"
    assert environ.get("QUERY_STRING") == "EIO=4&transport=websocket", (
        "the driver is no longer awaited with the request's WSGI environ"
    )


def test_engineio_async_translate_request_entry_makes_every_environ() -> None:
    """python-engineio ``AsyncServer._async['translate_request']``: every request's environ is
    what that entry returns for the handler given to ``handle_request``; protocol/engine.py's
    own makes it without a class object per request (idle memory per WebSocket)."""
    handler = _Handler(WEBSOCKET_HANDSHAKE)
    server = _Recording()
    asyncio.run(server.handle_request(handler))
    assert [h for h, _ in server.translated] == [handler], (
        "python-engineio no longer calls its 'translate_request' entry once with the handler "
        f"given to handle_request (calls: {server.translated!r})"
    )
    assert server.handed[0][2] is server.translated[0][1], (
        "python-engineio no longer serves the request with the environ its 'translate_request' "
        "entry returned"
    )


def test_engineio_asyncsocket_send_ping_is_the_task_start_background_task_gets() -> None:
    """python-engineio ``AsyncSocket._send_ping``: each session's PING loop is a task started
    through ``start_background_task`` with that bound method; protocol/engine.py drops it and
    PINGs from its one shared schedule, and while it never runs python-engineio's own ping
    timeout stays unarmed (it would close sessions rollcall's heartbeat keeps)."""
    server = _open_websocket_session(ping_timeout=0.001)
    pings = [t for t in server.started if getattr(t, "__func__", None) is AsyncSocket._send_ping]
    assert len(pings) == 1, (
        "python-engineio no longer starts a session's PING as AsyncSocket._send_ping through "
        f"start_background_task (started: {server.started!r}): rollcall's heartbeat would no "
        "longer replace it, and both would PING (python-engineio 4.13.2 changed this once)"
    )
    socket = pings[0].__self__
    time.sleep(0.01)  # ten times ping_timeout
    assert asyncio.run(socket.check_ping_timeout()), (
        "python-engineio's ping timeout fires without its _send_ping having run: it would "
        "close every session whose PINGs rollcall's heartbeat sends"
    )


def test_engineio_payload_max_decode_packets_bounds_a_poll_payload() -> None:
    """python-engineio ``Payload.max_decode_packets``: the most packets it decodes from one
    long-polling POST; protocol/engine.py refuses a longer payload with 400 before it does."""
    limit = Payload.max_decode_packets
    assert isinstance(limit, int) and limit > 0, (
        f"python-engineio's Payload.max_decode_packets is {limit!r}, not a packet count"
    )
    assert len(Payload(encoded_payload=RECORD_SEPARATOR.join(["4x"] * limit)).packets) == limit
    with pytest.raises(ValueError, match="Too many packets"):
        Payload(encoded_payload=RECORD_SEPARATOR.join(["4x"] * (limit + 1)))


def test_tornado_ws_connection_write_frame_writes_a_message_without_a_task() -> None:
    """Tornado ``WebSocketHandler.ws_connection._write_frame(fin, opcode, data)``: the frame
    writer under ``write_message``, which protocol/transport.py calls for every message (no
    task per message); its future is done once the client has the frame."""
    written: list[Any] = []

    class Echo(tornado.websocket.WebSocketHandler):
        def open(self) -> None:
            written.append(self.ws_connection._write_frame(True, 0x1, b"hello"))

    async def exchange() -> Any:
        [sock] = tornado.netutil.bind_sockets(0, "127.0.0.1")
        server = tornado.httpserver.HTTPServer(tornado.web.Application([("/", Echo)]))
        server.add_sockets([sock])
        try:
            url = f"ws://127.0.0.1:{sock.getsockname()[1]}/"
            client = await tornado.websocket.websocket_connect(url)
            message = await asyncio.wait_for(client.read_message(), 5)
            client.close()
            return message
        finally:
            server.stop()

    message = asyncio.run(exchange())
    assert message == "hello", f"Tornado's _write_frame(True, 0x1, b'hello') sent {message!r}"
    (future,) = written
    assert isinstance(future, asyncio.Future) and future.done(), (
        f"Tornado's _write_frame no longer returns the write's future ({future!r}): "
        "protocol/transport.py waits on it before it writes the next message"
    )


def test_aiopg_connection_ready_is_the_descriptor_callback() -> None:
    """aiopg ``Connection._ready`` (a static callback given a weak reference) and
    ``Connection._fileno``, which store/aiopg_compat.py wraps and reads."""
    assert isinstance(aiopg.Connection.__dict__.get("_ready"), staticmethod), (
        "aiopg.Connection._ready is no longer a static callback: store/aiopg_compat.py's "
        "workaround for aio-libs/aiopg#909 would not run (check whether the release fixed it)"
    )
