"""rollcall's entry point: builds the Tornado application and runs it until SIGTERM or SIGINT.

`python server.py --help` lists every flag; see config.py for their meaning and README.md for a
table of them.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import signal
import socket
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import tornado.httpserver
import tornado.netutil
import tornado.web

import handlers
import heap
import metrics
import web
from config import TEACHER_AUTH_NONE, TEACHER_AUTH_TOKEN, Config, configure_logging, parse_config
from handlers.connections import Connections
from handlers.healing import Sweeper
from protocol import Server, get_tornado_handler
from protocol.redis_transport import RedisTransport
from protocol.relay import RelayManager
from store import aiopg_compat
from store.errors import StoreUnavailable
from store.lessons import LessonStore
from store.liveness import Liveness
from store.presence import PresenceStore
from tracking import Tracker
from web import openfiles
from web.proxies import ProxiedHTTPServer
from web.roll_call import PresenceReader

log = logging.getLogger(__name__)

SOCKETIO_PATH = r"/socket.io/"
# Shutdown, from the signal: the sessions closed over --shutdown-drain, every socket disconnected
# (its presence cleared, or handed over) within DISCONNECT_TIMEOUT more, then the services closed
# (Mixpanel's queue gets tracking.CLOSE_TIMEOUT), all within --shutdown-drain + SHUTDOWN_TIMEOUT
# (systemd's TimeoutStopSec in docs/operations.md is above it).
SHUTDOWN_TIMEOUT = 10.0
DISCONNECT_TIMEOUT = 4.0
#: seconds between two batches of the sessions a shutdown closes over --shutdown-drain
DRAIN_STEP = 0.1
#: exit status when the port cannot be bound (2 is for invalid flags: a restart may succeed)
EXIT_CANNOT_LISTEN = 1


class CannotListen(Exception):
    """The address to listen on is taken (without --reuse-port on both processes) or refused."""

@dataclass
class Services:
    """The connections a running server holds, opened at start and closed at shutdown."""

    lessons: LessonStore
    presence: PresenceStore
    tracker: Tracker

    @classmethod
    async def open(cls, config: Config) -> Services:
        lessons = await LessonStore.open(config.database_url, config.store_timeout)
        presence = PresenceStore.open(
            config.redis_url, config.store_timeout, config.key_prefix, config.roster_ttl
        )
        return cls(
            lessons=lessons,
            presence=presence,
            tracker=Tracker(config.mixpanel_token, config.mixpanel_events_url),
        )

    async def check(self) -> dict[str, str | None]:
        """Each backend's state, probed concurrently: None when it answers, else why not (which
        names hosts and ports, so it is for the log only)."""
        names = ("redis", "postgres")
        results = await asyncio.gather(
            self.presence.ping(), self.lessons.ping(), return_exceptions=True
        )
        state: dict[str, str | None] = {}
        for name, result in zip(names, results, strict=True):
            if isinstance(result, StoreUnavailable):
                state[name] = result.reason
            elif isinstance(result, BaseException):
                raise result
            else:
                state[name] = None
        return state

    async def close(self) -> None:
        await asyncio.gather(self.lessons.close(), self.presence.close(), self.tracker.close())


class Rollcall(NamedTuple):
    """What build() makes: the application, its Socket.IO server, the per-sid records, and the
    heartbeat and sweep of the process (serve() starts and stops it)."""

    app: tornado.web.Application
    sio: Server
    connections: Connections
    sweeper: Sweeper
    #: relays between processes when --message-queue is set; serve() starts and stops it
    manager: RelayManager | None = None


def build(config: Config, services: Services) -> Rollcall:
    """The Socket.IO server and the routes of one process; tests mount the same app in-process."""
    options: dict[str, Any] = {
        "namespaces": ["/"],
        "ping_interval": config.ping_interval,
        "ping_timeout": config.ping_timeout,
        "max_http_buffer_size": config.max_payload,
        "cors_allowed_origins": config.cors_allowed_origins,
        "connect_timeout": config.connect_timeout,
        "max_connections_per_ip": config.max_connections_per_ip,
        "max_connections": openfiles.connection_cap(config.max_connections),
        "max_session_output": config.max_session_output,
        "websocket_compression": config.websocket_compression,
    }
    manager = None
    if config.message_queue is not None:
        transport = RedisTransport(config.message_queue, socket_timeout=config.store_timeout)
        manager = RelayManager(transport)
    sio = Server(client_manager=manager, **options)
    connections = handlers.register(
        sio,
        services.lessons,
        services.presence,
        services.tracker,
        handlers.JoinSettings(
            access_token_secret=config.access_token_secret,
            participant_roles=config.participant_roles,
            join_rate=config.join_rate,
            join_burst=config.join_burst,
            require_teacher_token=config.teacher_auth == TEACHER_AUTH_TOKEN,
            user_id_claim=config.user_id_claim,
        ),
    )
    sweeper = Sweeper(
        Liveness(services.presence, config.liveness_ttl),
        connections,
        functools.partial(close_sessions, sio, connections),
        config.liveness_interval,
    )
    # the gauges read this app: its sessions, and the queue of its Mixpanel tracker
    metrics.CONNECTIONS.track(sio)
    metrics.MIXPANEL_QUEUE_LENGTH.set_function(services.tracker.queue_length)
    app = tornado.web.Application(
        [
            (SOCKETIO_PATH, get_tornado_handler(sio)),
            *web.routes(
                config.admin_token,
                PresenceReader(services.presence, services.lessons),
                services.check,
            ),
        ],
        websocket_max_message_size=config.max_payload,
        log_function=web.log_request,
    )
    return Rollcall(app, sio, connections, sweeper, manager)


def drain_batches(sessions: list[str], drain: float) -> list[list[str]]:
    """`sessions` cut into batches of equal size, one to close every DRAIN_STEP, so that the
    last closes within `drain` seconds of the first (sooner when there are fewer sessions than
    steps): thousands of clients then do not all reconnect in the same instant."""
    steps = max(1, int(drain / DRAIN_STEP))
    size = max(1, math.ceil(len(sessions) / steps))
    return [sessions[i : i + size] for i in range(0, len(sessions), size)]


async def close_sessions(sio: Server, connections: Connections, drain: float = 0.0) -> None:
    """Close every Engine.IO session, in batches over `drain` seconds, and wait until each
    socket's disconnect handler is done. Closing the session (not a Socket.IO DISCONNECT) lets
    clients reconnect by themselves, to another instance during a rolling restart. Sessions
    opened meanwhile close with the last batch. Bounded by `drain` + DISCONNECT_TIMEOUT."""
    loop = asyncio.get_running_loop()
    closing: list[asyncio.Future[None]] = []
    try:
        async with asyncio.timeout(drain + DISCONNECT_TIMEOUT):
            first = loop.time()
            for n, batch in enumerate(drain_batches(sio.session_ids(), drain)):
                if n:
                    await asyncio.sleep(first + n * DRAIN_STEP - loop.time())
                # each runs the disconnect handlers of its sockets; the next batch goes on time
                closing.append(asyncio.ensure_future(sio.close_sessions(batch)))
            closing.append(asyncio.ensure_future(sio.close_sessions(sio.session_ids())))
            await asyncio.gather(*closing)
            await connections.wait_idle()  # disconnects that had begun before
    except TimeoutError:
        log.warning(
            "sockets still disconnecting after %.0f s; going on", drain + DISCONNECT_TIMEOUT
        )
    finally:
        for future in closing:
            future.cancel()


async def disconnect_all(rollcall: Rollcall, drain: float = 0.0) -> None:
    """Refuse new sockets, close every session over `drain` seconds (clearing each socket's
    presence, unless the connections hand it over), and shut the Socket.IO server down."""
    rollcall.connections.close()
    await close_sessions(rollcall.sio, rollcall.connections, drain)
    await rollcall.sio.shutdown()


def log_teacher_auth(config: Config) -> None:
    """Warn at start-up when teachers' joins are not authenticated, or cannot succeed."""
    if config.teacher_auth == TEACHER_AUTH_NONE:
        log.warning(
            "--teacher-auth none: any caller may join as the teacher of any lesson, without a "
            "token (the design document's flow; join_lesson.md revision 2 is off)"
        )
    elif config.access_token_secret is None:
        log.warning(
            "--teacher-auth token without --access-token-secret: every teacher's join answers "
            "INVALID_TOKEN"
        )


def make_http_server(app: tornado.web.Application, config: Config) -> tornado.httpserver.HTTPServer:
    """The HTTP server in front of `app`: a body over --max-payload is refused (400) before it is
    read, and the client address comes from X-Real-IP / X-Forwarded-For when the peer is one of
    --trusted-proxies, else it is the peer's (the per-address connection limit counts it, the
    logs show it). Tests serve the app through this too."""
    return ProxiedHTTPServer(
        app, max_body_size=config.max_payload, trusted_proxies=config.trusted_proxies
    )


def bind(config: Config) -> list[socket.socket]:
    """The listening sockets, bound before anything else is opened; with --reuse-port another
    process bound with it too may listen on the same port (the next one, during a deploy)."""
    try:
        return tornado.netutil.bind_sockets(
            config.port, config.host, reuse_port=config.reuse_port
        )
    except OSError as exc:
        raise CannotListen(f"cannot listen on {config.host}:{config.port}: {exc}") from exc


async def serve(config: Config) -> None:
    """Run until SIGTERM or SIGINT, then shut down within --shutdown-drain + SHUTDOWN_TIMEOUT:
    stop accepting; with a --handover-grace, mark this process retiring and leave its presence
    for its clients to take over, else clear it; close every session in batches over
    --shutdown-drain; remove this process's liveness records unless retiring; flush Mixpanel,
    close the pools, return."""
    sockets = bind(config)
    # after binding, so that a taken port is the one line a failed start writes
    openfiles.raise_open_file_limit(config.max_connections)
    services = await Services.open(config)
    state = await services.check()
    for name, reason in state.items():
        if reason is not None:
            log.warning(
                "%s is not answering at start (%s); serving anyway, /healthz says 503", name, reason
            )
    log_teacher_auth(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    rollcall = build(config, services)
    if rollcall.manager is not None:
        await rollcall.manager.start()
    await rollcall.sweeper.start()
    http_server = make_http_server(rollcall.app, config)
    http_server.add_sockets(sockets)
    loop_lag = metrics.LoopLagMonitor()
    loop_lag.start()
    collector = heap.Collector(
        lambda: rollcall.sio.eio.sessions_closed,
        lambda: len(rollcall.sio.eio.sessions),
        busy=lambda: services.presence.in_flight > 0 or services.lessons.in_flight > 0,
    )
    collector.start()
    log.info(
        "rollcall listening on http://%s:%d (process %s)",
        config.host,
        config.port,
        services.presence.process_id,
    )
    await stop.wait()
    log.info("shutting down")
    started = loop.time()
    drain = config.shutdown_drain
    http_server.stop()
    rollcall.sio.refuse_sessions()  # on HTTP connections kept alive: clients retry elsewhere
    handing_over = config.handover_grace > 0 and await rollcall.sweeper.start_handover(
        config.handover_grace
    )
    if handing_over:
        rollcall.connections.hand_over()
    await disconnect_all(rollcall, drain)  # bounded by drain + DISCONNECT_TIMEOUT
    try:
        async with asyncio.timeout(drain + DISCONNECT_TIMEOUT - (loop.time() - started)):
            await http_server.close_all_connections()
    except TimeoutError:
        log.warning(
            "connections still open %.0f s after the signal; closing anyway",
            drain + DISCONNECT_TIMEOUT,
        )
    collector.stop()
    await loop_lag.stop()
    await rollcall.sweeper.stop()
    try:
        async with asyncio.timeout(drain + SHUTDOWN_TIMEOUT - (loop.time() - started)):
            if handing_over:
                await rollcall.sweeper.end_handover()
            else:
                await rollcall.sweeper.retire()
            if rollcall.manager is not None:
                await rollcall.manager.stop()
            await services.close()
    except TimeoutError:
        log.warning(
            "services still closing %.0f s after the signal; exiting", drain + SHUTDOWN_TIMEOUT
        )
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


def setup_process() -> None:
    """The process-wide settings rollcall serves with, made once before anything is built (no
    constructor or import changes them). Tests that build the app in-process call this too."""
    metrics.configure()
    aiopg_compat.install()


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_config(argv)
    configure_logging(config.log_level, config.log_format)
    setup_process()
    try:
        run(config)
    except CannotListen as exc:
        log.error("%s", exc)
        return EXIT_CANNOT_LISTEN
    return 0


if __name__ == "__main__":
    # Run as the module `server`, not as `__main__`: its logger is then named "server", like
    # every logger after its module, and there is one copy of the module however it is reached.
    import server

    sys.exit(server.main())
