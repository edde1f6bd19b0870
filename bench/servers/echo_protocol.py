"""Our protocol.Server with one trivial ack handler, `echo`, on uvloop unless --loop says not."""

import tornado.web
from common import parse_args, run

from protocol import Server, get_tornado_handler

sio = Server(namespaces=["/"])


@sio.on("echo")
async def echo(sid: str, data: object) -> object:
    return data


if __name__ == "__main__":
    run(tornado.web.Application([(r"/socket.io/", get_tornado_handler(sio))]),
        parse_args(default_loop="uvloop"))
