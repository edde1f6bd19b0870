"""python-socketio's AsyncServer (tornado mode, defaults) with the same trivial `echo` handler.

It runs on the default asyncio loop unless --loop says otherwise, as python-socketio does.
"""

import socketio
import tornado.web
from common import parse_args, run

sio = socketio.AsyncServer(async_mode="tornado")


@sio.on("echo")
async def echo(sid: str, data: object) -> object:
    return data


if __name__ == "__main__":
    run(tornado.web.Application([(r"/socket.io/", socketio.get_tornado_handler(sio))]),
        parse_args(default_loop="asyncio"))
