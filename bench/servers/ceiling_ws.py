"""The ceiling of bench/storm.py: a bare Tornado WebSocket server speaking just enough Engine.IO
and Socket.IO for its devices, with no Redis, no PostgreSQL, no JWT and no python-engineio.

Per connection: the Engine.IO open packet, `40` -> `40{"sid":...}`, `42<id>[...]` -> the ack
`43<id>[{"status":"SUCCESS","data":{}}]`, and a PING every --ping-interval seconds (one shared
timer for all connections, as rollcall's) whose PONG is taken and ignored. A polling handshake
(GET) answers the open packet too, so that bench/harness.py's readiness check works. It is what
any Socket.IO server on Tornado and this loop can approach: rollcall's joins per second over this
server's is the share of the transport it keeps.
"""

from __future__ import annotations

import asyncio
import itertools
import json

import tornado.httpserver
import tornado.web
import tornado.websocket
from common import parse_args, until_signal

PING_INTERVAL = 25.0
PING_TIMEOUT = 20.0
#: rollcall's listen backlog (web/accept.py), so that both queue the same SYNs
LISTEN_BACKLOG = 4096
SUCCESS_ACK = '[{"status":"SUCCESS","data":{}}]'
_ids = itertools.count()
_open: set[CeilingSocket] = set()


def open_packet(sid: str, upgrades: list[str]) -> str:
    return "0" + json.dumps({"sid": sid, "upgrades": upgrades,
                             "pingInterval": int(PING_INTERVAL * 1000),
                             "pingTimeout": int(PING_TIMEOUT * 1000), "maxPayload": 1_000_000},
                            separators=(",", ":"))


class CeilingSocket(tornado.websocket.WebSocketHandler):
    sid = ""

    async def get(self, *args: object, **kwargs: object) -> None:
        if self.request.headers.get("Upgrade", "").lower() == "websocket":
            await super().get(*args, **kwargs)
        else:
            self.finish(open_packet(f"p{next(_ids)}", ["websocket"]))

    def post(self) -> None:
        self.finish("ok")

    def check_origin(self, origin: str) -> bool:
        return True

    def open(self) -> None:
        self.sid = f"s{next(_ids)}"
        _open.add(self)
        self.write_message(open_packet(self.sid, []))

    def on_message(self, message: str | bytes) -> None:
        if message == "40":
            self.write_message('40{"sid":"' + self.sid + '"}')
        elif isinstance(message, str) and message.startswith("42"):
            ack_id = message[2:message.index("[")]
            self.write_message("43" + ack_id + SUCCESS_ACK)

    def on_close(self) -> None:
        _open.discard(self)


def ping_all() -> None:
    for socket in list(_open):
        try:
            socket.write_message("2")
        except tornado.websocket.WebSocketClosedError:
            _open.discard(socket)  # closed, its on_close not run yet: no PING, and no abort
    asyncio.get_running_loop().call_later(PING_INTERVAL, ping_all)


async def main(port: int) -> None:
    asyncio.get_running_loop().call_later(PING_INTERVAL, ping_all)
    server = tornado.httpserver.HTTPServer(
        tornado.web.Application([(r"/socket.io/", CeilingSocket)]))
    server.listen(port, "127.0.0.1", backlog=LISTEN_BACKLOG)
    await until_signal()
    server.stop()


if __name__ == "__main__":
    args = parse_args(default_loop="uvloop")
    if args.loop == "uvloop":
        import uvloop

        uvloop.run(main(args.port))
    else:
        asyncio.run(main(args.port))
