"""Raw Engine.IO v4 peers for the protocol tests: they speak exact frames over WebSocket and
long-polling, answer pings, and report when the server closes the session."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct
from collections import deque
from typing import Any
from urllib.parse import urlsplit

import tornado.httpclient
import tornado.websocket

RECV_TIMEOUT = 2.0
SEPARATOR = "\x1e"
WS_VERSION = "13"
#: the longest WebSocket payload whose length fits the 7-bit, then the 16-bit field (RFC 6455)
WS_SHORT, WS_MEDIUM = 125, 0xFFFF
WS_TEXT = 0x1  # the text frame's opcode


class WsPeer:
    """A raw Engine.IO v4 WebSocket peer: answers pings, returns everything else verbatim.

    Frames are kept as they arrive, however many: Tornado's own read queue holds one and stops
    reading behind it, so a peer that stopped reading would never see its connection close."""

    conn: tornado.websocket.WebSocketClientConnection

    def __init__(self) -> None:
        #: the frames received and not yet read; None once the connection closed
        self.inbox: asyncio.Queue[str | bytes | None] = asyncio.Queue()

    @classmethod
    async def connect(cls, request: str | tornado.httpclient.HTTPRequest) -> WsPeer:
        peer = cls()
        peer.conn = await tornado.websocket.websocket_connect(
            request, on_message_callback=peer.inbox.put_nowait
        )
        return peer

    @classmethod
    async def open(cls, url: str, query: str = "EIO=4&transport=websocket") -> WsPeer:
        return await cls.connect(url.replace("http", "ws") + "?" + query)

    async def send(self, *frames: str | bytes) -> None:
        for frame in frames:
            await self.conn.write_message(frame, binary=isinstance(frame, bytes))

    async def recv(self) -> str | bytes | None:
        """The next frame that is not a ping; None once the server closed the connection."""
        while True:
            frame = await asyncio.wait_for(self.inbox.get(), RECV_TIMEOUT)
            if frame != "2":
                return frame
            await self.conn.write_message("3")

    async def closed(self) -> bool:
        """True once the server closes the socket (a CLOSE packet may precede the close)."""
        while True:
            frame = await self.recv()
            if frame is None:
                return True
            assert frame == "1", f"unexpected frame {frame!r} before close"

    def close(self) -> None:
        self.conn.close()


class PollPeer:
    """A raw Engine.IO v4 long-polling peer with the same interface as :class:`WsPeer`."""

    def __init__(self, url: str, sid: str, handshake: str) -> None:
        self.url = url
        self.sid = sid
        self.handshake = handshake
        self.http = tornado.httpclient.AsyncHTTPClient()
        self.inbox: deque[str | bytes] = deque()
        self.gone = False

    @classmethod
    async def open(cls, url: str) -> PollPeer:
        response = await fetch(url + "?EIO=4&transport=polling")
        assert response.code == 200, response.body
        text = response.body.decode()
        assert text.startswith("0")
        return cls(url, json.loads(text[1:])["sid"], text)

    @property
    def session_url(self) -> str:
        return f"{self.url}?EIO=4&transport=polling&sid={self.sid}"

    async def post(self, *frames: str | bytes) -> tornado.httpclient.HTTPResponse:
        body = SEPARATOR.join(
            "b" + base64.b64encode(f).decode() if isinstance(f, bytes) else f for f in frames
        )
        return await fetch(self.session_url, method="POST", body=body)

    async def send(self, *frames: str | bytes) -> None:
        response = await self.post(*frames)
        assert response.code == 200, response.body
        assert response.body == b"ok"

    async def poll(self) -> tornado.httpclient.HTTPResponse:
        return await fetch(self.session_url)

    async def recv(self) -> str | bytes | None:
        while not self.inbox:
            if self.gone:
                return None
            response = await self.poll()
            if response.code != 200:
                self.gone = True
                return None
            for frame in response.body.decode().split(SEPARATOR):
                if frame == "2":
                    await self.send("3")
                elif frame.startswith("b"):
                    self.inbox.append(base64.b64decode(frame[1:]))
                elif frame == "1":
                    self.gone = True
                else:
                    self.inbox.append(frame)
        return self.inbox.popleft()

    async def closed(self) -> bool:
        while True:
            frame = await self.recv()
            if frame is None:
                return True
            assert frame == "6", f"unexpected frame {frame!r} before close"

    def close(self) -> None:
        """Nothing to release: each request is independent."""


async def fetch(url: str, method: str = "GET", **kwargs: Any) -> tornado.httpclient.HTTPResponse:
    return await tornado.httpclient.AsyncHTTPClient().fetch(
        url, method=method, raise_error=False, request_timeout=RECV_TIMEOUT, **kwargs
    )


def _frame(text: str) -> bytes:
    """A client's text frame for `text`, masked with a zero key."""
    payload = text.encode()
    length = len(payload)
    if length <= WS_SHORT:
        header = struct.pack("!BB", 0x80 | WS_TEXT, 0x80 | length)
    elif length <= WS_MEDIUM:
        header = struct.pack("!BBH", 0x80 | WS_TEXT, 0x80 | (WS_SHORT + 1), length)
    else:
        header = struct.pack("!BBQ", 0x80 | WS_TEXT, 0x80 | (WS_SHORT + 2), length)
    return header + bytes(4) + payload


class RawWebSocket:
    """A WebSocket client written by hand on a bare socket, for what a library client will not
    do: a handshake Tornado refuses, or a client that sends and never reads."""

    def __init__(self, sock: socket.socket, status: int, headers: dict[str, str]) -> None:
        self.sock = sock
        self.status = status
        #: the answer's headers, names in lower case
        self.headers = headers

    @classmethod
    async def open(
        cls,
        url: str,
        query: str = "EIO=4&transport=websocket",
        version: str = WS_VERSION,
        receive_buffer: int | None = None,
        extra_headers: str = "",
    ) -> RawWebSocket:
        """Send the handshake and read the status line and headers of the answer (nothing
        more). `receive_buffer` shrinks the socket's receive buffer, for a client that never
        reads; `extra_headers` (lines ending in CRLF) go into the request as they are."""
        parts = urlsplit(url)
        loop = asyncio.get_running_loop()
        sock = socket.socket()
        if receive_buffer is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        sock.setblocking(False)
        await loop.sock_connect(sock, (parts.hostname, parts.port))
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET {parts.path}?{query} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: {version}\r\n{extra_headers}\r\n"
        )
        await loop.sock_sendall(sock, request.encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = await asyncio.wait_for(loop.sock_recv(sock, 1), RECV_TIMEOUT)
            if not chunk:
                break
            head += chunk
        status = int(head.split(b" ", 2)[1]) if head else 0
        lines = head.decode("latin-1").split("\r\n")[1:]
        headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(":") for line in lines if ":" in line)
        }
        return cls(sock, status, headers)

    async def send(self, *texts: str) -> None:
        """Text frames, masked with a zero key (which leaves the payload as it is), in one
        write: several arrive together, so the server reads them in one go."""
        await asyncio.get_running_loop().sock_sendall(self.sock, b"".join(map(_frame, texts)))

    async def recv(self) -> str:
        """The next text frame from the server (unmasked, unfragmented); "" once it closed."""
        header = await self._read(2)
        if len(header) < 2 or header[0] & 0x0F != WS_TEXT:
            return ""
        length = header[1] & 0x7F
        if length == WS_SHORT + 1:
            (length,) = struct.unpack("!H", await self._read(2))
        elif length == WS_SHORT + 2:
            (length,) = struct.unpack("!Q", await self._read(8))
        return (await self._read(length)).decode()

    async def _read(self, size: int) -> bytes:
        loop = asyncio.get_running_loop()
        data = b""
        while len(data) < size:
            chunk = await asyncio.wait_for(loop.sock_recv(self.sock, size - len(data)),
                                           RECV_TIMEOUT)
            if not chunk:
                break
            data += chunk
        return data

    def close(self) -> None:
        self.sock.close()
