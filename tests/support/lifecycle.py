"""Helpers of the lifecycle tests: awaiting the server's join and disconnect log lines, and a raw
Engine.IO long-polling client that can fall silent (to make the server's ping timeout fire)."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import tornado.httpclient
import tornado.websocket

from store.keys import BOOKKEEPING_PREFIX
from tests.support.joins import EVENT_TIMEOUT, snapshot

RECORD_SEPARATOR = "\x1e"


class ServerEvents(logging.Handler):
    """Collects the log records that carry an `event` field ("join", "disconnect"), and the
    unexpected errors, so tests can await a given sid's line."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.errors: list[logging.LogRecord] = []
        self._changed = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        # The server logs from the event loop's thread, which is the test's.
        if record.levelno >= logging.ERROR:
            self.errors.append(record)
        if getattr(record, "event", None) is not None:
            self.records.append(record)
            self._changed.set()

    def of(self, event: str, sid: str) -> list[logging.LogRecord]:
        return [r for r in self.records if r.event == event and r.sid == sid]  # type: ignore[attr-defined]

    async def wait_for(self, event: str, sid: str) -> logging.LogRecord:
        """The first `event` line of `sid`, once logged."""
        async with asyncio.timeout(EVENT_TIMEOUT):
            while not self.of(event, sid):
                self._changed.clear()
                await self._changed.wait()
        return self.of(event, sid)[0]


class SilentPollingClient:
    """Engine.IO v4 over long-polling, by hand: connects to "/", emits, and never answers a ping.

    Stock clients always answer pings; this one lets the server's ping timeout fire while the
    TCP connections stay healthy.
    """

    def __init__(self, url: str) -> None:
        self._base = f"{url}/socket.io/?EIO=4&transport=polling"
        self._http = tornado.httpclient.AsyncHTTPClient(force_instance=True)
        self._eio_sid = ""
        self.sid = ""

    async def connect(self) -> None:
        (handshake,) = await self._get()
        self._eio_sid = json.loads(handshake[1:])["sid"]
        await self._post("40")
        reply = await self._until(lambda packet: packet.startswith("40"))
        self.sid = json.loads(reply[2:])["sid"]

    async def call(self, event: str, *args: Any) -> list[Any]:
        """Emit with ack id 0 and return the ack's arguments (pings in between go unanswered)."""
        await self._post("420" + json.dumps([event, *args]))
        ack = await self._until(lambda packet: packet.startswith("430"))
        return json.loads(ack[3:])

    async def _until(self, wanted: Any) -> str:
        async with asyncio.timeout(EVENT_TIMEOUT):
            while True:
                for packet in await self._get():
                    if wanted(packet):
                        return packet

    async def _get(self) -> list[str]:
        url = self._base + (f"&sid={self._eio_sid}" if self._eio_sid else "")
        response = await self._http.fetch(url)
        return response.body.decode().split(RECORD_SEPARATOR)

    async def _post(self, packet: str) -> None:
        await self._http.fetch(
            f"{self._base}&sid={self._eio_sid}", method="POST", body=packet.encode()
        )

    def close(self) -> None:
        self._http.close()


def presence(db: Any) -> dict[str, tuple[Any, bool]]:
    """Every presence key of the database (rollcall's own bookkeeping, such as the rosters, has
    tests of its own) with its value and whether it has a TTL: exact states to compare (TTLs
    themselves tick)."""
    return {
        key: (value, ttl > 0)
        for key, (_kind, value, ttl) in snapshot(db).items()
        if not key.startswith(BOOKKEEPING_PREFIX)
    }


class RawWebSocketClient:
    """Socket.IO over a bare Engine.IO WebSocket, to send frames back to back (an event then a
    DISCONNECT) exactly as given; stock clients may drop an event queued before a disconnect.

    Frames are kept as they arrive: Tornado's own read queue holds one and stops reading behind
    it, so a client that stopped reading would never see its connection close."""

    def __init__(self, url: str) -> None:
        self._url = url.replace("http://", "ws://", 1) + "/socket.io/?EIO=4&transport=websocket"
        self._ws: tornado.websocket.WebSocketClientConnection | None = None
        self._inbox: asyncio.Queue[str | bytes | None] = asyncio.Queue()
        self.sid = ""

    async def connect(self) -> None:
        self._ws = await tornado.websocket.websocket_connect(
            self._url, on_message_callback=self._inbox.put_nowait
        )
        # Without it, Nagle's algorithm holds a second small frame until the server's delayed
        # ACK of the first (~40 ms): the frames would never race.
        self._ws.protocol.stream.set_nodelay(True)
        await self._inbox.get()  # the Engine.IO handshake
        await self._ws.write_message("40")
        while True:
            message = await self._inbox.get()
            if isinstance(message, str) and message.startswith("40"):
                self.sid = json.loads(message[2:])["sid"]
                return

    async def send(self, *frames: str) -> None:
        assert self._ws is not None
        for frame in frames:
            await self._ws.write_message(frame)

    async def receive(self) -> str | bytes | None:
        """The next frame from the server, or None once it has closed the connection."""
        assert self._ws is not None
        return await self._inbox.get()

    def close(self) -> None:
        if self._ws is not None:
            self._ws.close()


def event_frame(event: str, *args: Any) -> str:
    """A Socket.IO EVENT on "/" without an ack id."""
    return "42" + json.dumps([event, *args])


DISCONNECT_FRAME = "41"
