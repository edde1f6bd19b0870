"""A bare python-engineio echo that speaks just enough Socket.IO for the load generator.

It answers the Socket.IO CONNECT `0` with `0{"sid":...}` and each EVENT `2<id>["echo",data]` with
the ACK `3<id>[data]` (parsed and re-encoded as JSON, as a Socket.IO layer must), and nothing
else: the floor any Socket.IO layer over python-engineio on the same loop can approach.
"""

import json

import engineio
import tornado.web
from common import parse_args, run

eio = engineio.AsyncServer(async_mode="tornado")


@eio.on("message")
async def message(sid: str, data: str) -> None:
    if data.startswith("2"):
        bracket = data.index("[")
        args = json.loads(data[bracket:])
        await eio.send(sid, f"3{data[1:bracket]}{json.dumps(args[1:], separators=(',', ':'))}")
    elif data.startswith("0"):
        await eio.send(sid, f'0{{"sid":"{sid}"}}')


if __name__ == "__main__":
    run(tornado.web.Application([(r"/socket.io/", engineio.get_tornado_handler(eio))]),
        parse_args(default_loop="uvloop"))
