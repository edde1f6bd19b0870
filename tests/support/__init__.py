"""What the tests share besides fixtures: where the project is, the test secret and heartbeats,
the SUCCESS ack, free ports, and server.py run as a process. Fixtures stay in the conftests;
helpers of one kind have a module here (joins, lifecycle, peers, raw_peers, chromium, ...)."""

from __future__ import annotations

import asyncio
import functools
import pathlib
import resource
import socket
import sys
from collections.abc import Iterator

import tornado.ioloop
import tornado.web

from protocol import Server, get_tornado_handler

ROOT = pathlib.Path(__file__).resolve().parent.parent.parent
SCHEMA = ROOT / "store" / "schema.sql"
#: 64 bytes: long enough for HS512 too, which tests forge tokens with (PyJWT warns below that)
TEST_TOKEN_SECRET = "test-secret-of-64-bytes-long-enough-for-hs256-and-hs512-too-0000"
# Short heartbeats: python-socketio's client needs a ping cycle to finish a graceful disconnect.
TEST_PING_INTERVAL = 0.3
TEST_PING_TIMEOUT = 0.5
#: join_lesson's ack when it succeeds (join_lesson.md, "Response")
SUCCESS = {"status": "SUCCESS", "data": {}}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


SERVER_READY_LINE = b"rollcall listening"  # logged by serve() once it accepts connections
SERVER_START_TIMEOUT = 15.0


class ServerProcess:
    """server.py in a subprocess, as deployment runs it; its stderr is read continuously (a full
    pipe would block it) and kept in `lines`."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[bytes] = []
        self._ready = asyncio.Event()
        self._reader = asyncio.ensure_future(self._read())

    @classmethod
    async def start(cls, *args: str, open_files: tuple[int, int] | None = None) -> ServerProcess:
        """Start server.py with `args`, under the (soft, hard) `open_files` limit if given."""
        limit = None if open_files is None else functools.partial(
            resource.setrlimit, resource.RLIMIT_NOFILE, open_files
        )
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(ROOT / "server.py"), *args, stderr=asyncio.subprocess.PIPE,
            preexec_fn=limit,
        )
        server = cls(proc)
        try:
            async with asyncio.timeout(SERVER_START_TIMEOUT):
                await server._ready.wait()
        except TimeoutError:
            await server.stop()
            raise
        return server

    async def _read(self) -> None:
        assert self.proc.stderr is not None
        async for line in self.proc.stderr:
            self.lines.append(line)
            if SERVER_READY_LINE in line:
                self._ready.set()

    async def stop(self) -> None:
        """Kill it (if still running) and wait until its output is read."""
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        await self._reader


def socketio_app(sio: Server) -> tornado.web.Application:
    """An application that serves only `sio`, for tests of the Socket.IO layer on its own."""
    return tornado.web.Application([(r"/socket.io/", get_tornado_handler(sio))])


def served(io_loop: tornado.ioloop.IOLoop, sio: Server) -> Iterator[Server]:
    """Yield `sio` to a test, then end it as a server ends (its sessions closed, its engine shut
    down), so that no task of it outlives the test's loop. A fixture body: `yield from`."""
    yield sio
    io_loop.run_sync(sio.close_all)
    io_loop.run_sync(sio.shutdown)
