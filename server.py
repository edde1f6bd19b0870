"""rollcall's entry point: builds the Tornado application and runs it until SIGTERM or SIGINT.

`python server.py --help` lists every flag; see config.py for their meaning and README.md for a
table of them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import tornado.httpserver
import tornado.web

import handlers
import metrics
import web
from config import Config, configure_logging, parse_config
from protocol import Server, get_tornado_handler
from store.errors import StoreUnavailable
from store.lessons import LessonStore
from store.presence import PresenceStore
from tracking import Tracker
from web.presence import PresenceReader

log = logging.getLogger("rollcall.server")

SOCKETIO_PATH = r"/socket.io/"


@dataclass
class Services:
    """The connections a running server holds, opened at start and closed at shutdown."""

    lessons: LessonStore
    presence: PresenceStore
    tracker: Tracker
    viewer: PresenceReader

    @classmethod
    async def open(cls, config: Config) -> Services:
        lessons = await LessonStore.open(config.database_url, config.store_timeout)
        presence = PresenceStore.open(config.redis_url, config.store_timeout, config.key_prefix)
        viewer = PresenceReader.open(config.redis_url, config.store_timeout, config.key_prefix)
        return cls(
            lessons=lessons, presence=presence, tracker=Tracker.from_config(config), viewer=viewer
        )

    async def check(self) -> dict[str, str]:
        """Each backend's state, "ok" or why not, probed concurrently."""
        names = ("redis", "postgres")
        results = await asyncio.gather(
            self.presence.ping(), self.lessons.ping(), return_exceptions=True
        )
        state = {}
        for name, result in zip(names, results, strict=True):
            if isinstance(result, StoreUnavailable):
                state[name] = result.reason
            elif isinstance(result, BaseException):
                raise result
            else:
                state[name] = "ok"
        return state

    async def close(self) -> None:
        await asyncio.gather(
            self.lessons.close(), self.presence.close(), self.tracker.close(), self.viewer.close()
        )


class HealthHandler(tornado.web.RequestHandler):
    """GET /healthz: 200 when Redis and PostgreSQL both answer, 503 naming the one that does not."""

    def initialize(self, services: Services) -> None:
        self.services = services

    async def get(self) -> None:
        state = await self.services.check()
        healthy = all(value == "ok" for value in state.values())
        self.set_status(200 if healthy else 503)
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps({"status": "ok" if healthy else "unavailable", **state}))


def build(config: Config, services: Services) -> tuple[tornado.web.Application, Server]:
    """The Socket.IO server and the routes of one process; tests mount the same app in-process."""
    sio = Server(
        namespaces=["/"],
        ping_interval=config.ping_interval,
        ping_timeout=config.ping_timeout,
        max_http_buffer_size=config.max_payload,
        cors_allowed_origins=config.cors_allowed_origins,
        connect_timeout=config.connect_timeout,
    )
    handlers.register(sio, services, config)
    metrics.CONNECTIONS.track(sio.eio)
    app = tornado.web.Application(
        [
            (SOCKETIO_PATH, get_tornado_handler(sio)),
            (r"/healthz", HealthHandler, {"services": services}),
            *web.routes(config, services.viewer),
        ],
        websocket_max_message_size=config.max_payload,
    )
    return app, sio


async def serve(config: Config) -> None:
    """Run until SIGTERM or SIGINT, then stop accepting, close the services and return."""
    services = await Services.open(config)
    state = await services.check()
    for name, value in state.items():
        if value != "ok":
            log.warning(
                "%s is not answering at start (%s); serving anyway, /healthz says 503", name, value
            )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    app, _sio = build(config, services)
    http_server = tornado.httpserver.HTTPServer(
        app, max_body_size=config.max_payload, xheaders=True
    )
    http_server.listen(config.port, config.host)
    loop_lag = metrics.LoopLagMonitor()
    loop_lag.start()
    log.info("rollcall listening on http://%s:%d", config.host, config.port)
    await stop.wait()
    log.info("shutting down")
    http_server.stop()
    await loop_lag.stop()
    await services.close()
    log.info("stopped")


def run(config: Config) -> None:
    """Run serve() on the configured event loop."""
    if config.event_loop == "uvloop":
        try:
            import uvloop
        except ImportError:
            log.warning("uvloop is not installed; using the default asyncio loop")
        else:
            uvloop.run(serve(config))
            return
    asyncio.run(serve(config))


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_config(argv)
    configure_logging(config.log_level, config.log_format)
    run(config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
