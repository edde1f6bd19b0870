"""web/accept.py's accept loop in Tornado's HTTP server: its listening sockets are served by an
Acceptor (connections reach the server's handle_stream), and stop() stops accepting and closes
them."""

from __future__ import annotations

import socket

import pytest
import tornado.netutil
import tornado.web
from tornado.httpclient import AsyncHTTPClient

from web.proxies import ProxiedHTTPServer


class Hello(tornado.web.RequestHandler):
    def get(self) -> None:
        self.finish("hello")


@pytest.mark.gen_test(timeout=10)
async def test_the_acceptor_serves_the_http_server_and_stop_closes_its_sockets() -> None:
    server = ProxiedHTTPServer(tornado.web.Application([(r"/", Hello)]))
    [sock] = tornado.netutil.bind_sockets(0, "127.0.0.1")
    port = sock.getsockname()[1]
    server.add_sockets([sock])
    try:
        assert [acceptor.sock for acceptor in server._acceptors] == [sock]
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
        response = await AsyncHTTPClient().fetch(f"http://127.0.0.1:{port}/")
        assert response.body == b"hello"
    finally:
        server.stop()
    assert sock.fileno() == -1  # closed by stop()
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port)):
        pass
    await server.close_all_connections()
