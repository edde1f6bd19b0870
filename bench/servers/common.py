"""What the benchmark servers share: flags, the event loop choice, and serving until SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import Sequence

import tornado.httpserver
import tornado.web


def parse_args(default_loop: str, argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--loop", choices=("uvloop", "asyncio"), default=default_loop)
    return p.parse_args(argv)


async def until_signal() -> None:
    """Return once SIGTERM or SIGINT arrives (the harness stops servers with SIGTERM)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()


async def serve(app: tornado.web.Application, port: int) -> None:
    """Listen on 127.0.0.1:port until SIGTERM or SIGINT."""
    server = tornado.httpserver.HTTPServer(app)
    server.listen(port, "127.0.0.1")
    await until_signal()
    server.stop()


def run(app: tornado.web.Application, args: argparse.Namespace) -> None:
    """Serve app on the event loop args.loop names."""
    if args.loop == "uvloop":
        import uvloop

        uvloop.run(serve(app, args.port))
    else:
        asyncio.run(serve(app, args.port))
