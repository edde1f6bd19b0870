"""web/accept.py, the one place relying on Tornado's TCPServer internals: the HTTP server's
listening sockets are served by its Acceptor (connections reach Tornado's _handle_connection),
and stop() (which reads _sockets and _handlers) still stops accepting and closes them."""

from __future__ import annotations

import socket

import pytest
import tornado.netutil
import tornado.web
from tornado.httpclient import AsyncHTTPClient

from web.accept import Acceptor
from web.proxies import ProxiedHTTPServer


class Hello(tornado.web.RequestHandler):
    def get(self) -> None:
        self.finish("hello")


@pytest.mark.gen_test(timeout=10)
async def test_tornado_tcpserver_sockets_handlers_handle_connection_serve_and_stop() -> None:
    """If this fails, Tornado changed what add_sockets fills or stop reads: web/accept.py's
    AcceptBackoff must follow."""
    server = ProxiedHTTPServer(tornado.web.Application([(r"/", Hello)]))
    [sock] = tornado.netutil.bind_sockets(0, "127.0.0.1")
    port = sock.getsockname()[1]
    server.add_sockets([sock])
    try:
        stop = server._handlers[sock.fileno()]
        assert isinstance(stop.__self__, Acceptor)  # not netutil.add_accept_handler's closure
        assert server._sockets[sock.fileno()] is sock
        response = await AsyncHTTPClient().fetch(f"http://127.0.0.1:{port}/")
        assert response.body == b"hello"
    finally:
        server.stop()
    assert sock.fileno() == -1  # closed by stop()
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port)):
        pass
    await server.close_all_connections()
