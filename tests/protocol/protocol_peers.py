"""Raw Engine.IO v4 peers for the protocol tests: they speak exact frames over WebSocket and
long-polling, answer pings, and report when the server closes the session."""

from __future__ import annotations

import asyncio
import base64
import json
from collections import deque
from typing import Any

import tornado.httpclient
import tornado.websocket

RECV_TIMEOUT = 2.0
SEPARATOR = "\x1e"


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
