"""Runs the official Socket.IO protocol test-suite (../shared/vendor/socket.io-protocol, unchanged)
against a `protocol.Server` configured exactly as the suite's README asks.

The suite's URL is fixed (http://localhost:3000), so test_official_suite.py starts this module
inside a network namespace of its own, and fails if the system refuses one: port 3000 is then
always free, whoever else tests on the machine. `make test` copies the suite to SUITE_DIR and
installs its dependencies there (never committed). Run by hand: `python -m
tests.integration.protocol.official_suite`; the exit status is mocha's (the number of failed tests).
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import tornado.web

from protocol import Server, get_tornado_handler

ROOT = Path(__file__).resolve().parents[3]
#: where the Makefile copies the vendored suite and runs `npm install`
SUITE_DIR = ROOT / ".run" / "socket.io-protocol"
MOCHA = SUITE_DIR / "node_modules" / ".bin" / "mocha"
SUITE = "test-suite.js"
#: the address test-suite.js connects to
HOST = "localhost"
PORT = 3000
# The reference server's options in the suite's README.
PING_INTERVAL = 0.3
PING_TIMEOUT = 0.2
MAX_PAYLOAD = 1_000_000
CONNECT_TIMEOUT = 1.0
CORS_ALLOWED_ORIGINS = "*"
CUSTOM_NAMESPACE = "/custom"


def build_server() -> Server:
    """The README's server: on connection emit `auth` with the handshake's auth payload (both
    namespaces); on "/" echo `message` as `message-back` and ack `message-with-ack` with its
    arguments."""
    sio = Server(
        namespaces=["/", CUSTOM_NAMESPACE],
        ping_interval=PING_INTERVAL,
        ping_timeout=PING_TIMEOUT,
        max_http_buffer_size=MAX_PAYLOAD,
        connect_timeout=CONNECT_TIMEOUT,
        cors_allowed_origins=CORS_ALLOWED_ORIGINS,
    )
    for namespace in ("/", CUSTOM_NAMESPACE):

        async def connect(sid: str, environ: dict, auth: Any, namespace: str = namespace) -> None:
            await sio.emit("auth", auth or {}, to=sid, namespace=namespace)

        sio.on("connect", connect, namespace=namespace)

    @sio.on("message")
    async def message(sid: str, *args: Any) -> None:
        await sio.emit("message-back", args, to=sid)

    @sio.on("message-with-ack")
    async def message_with_ack(sid: str, *args: Any) -> tuple[Any, ...]:
        return args

    return sio


async def run_suite(mocha_args: list[str]) -> int:
    """Serve the app on localhost:3000, run mocha against it, return mocha's exit status."""
    if not MOCHA.exists():
        print(f"{MOCHA} is missing: `make test` installs the suite", file=sys.stderr)
        return 2
    sio = build_server()
    app = tornado.web.Application(
        [(r"/socket.io/", get_tornado_handler(sio))], websocket_max_message_size=MAX_PAYLOAD
    )
    server = app.listen(PORT, HOST, max_body_size=MAX_PAYLOAD)
    try:
        mocha = await asyncio.create_subprocess_exec(
            str(MOCHA), "--forbid-only", "--forbid-pending", *mocha_args, SUITE, cwd=SUITE_DIR
        )
        return await mocha.wait()
    finally:
        server.stop()
        await sio.close_all()
        await sio.shutdown()
        await server.close_all_connections()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--loopback-up",
        action="store_true",
        help="bring the loopback interface up first (inside a fresh network namespace)",
    )
    parser.add_argument("mocha_args", nargs="*", help="more mocha options, e.g. --reporter=dot")
    args = parser.parse_args()
    if args.loopback_up:
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    return asyncio.run(run_suite(args.mocha_args))


if __name__ == "__main__":
    sys.exit(main())
