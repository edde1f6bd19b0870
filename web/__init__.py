"""rollcall's HTTP surface besides Socket.IO: /healthz, /metrics and the admin lesson views."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping

import tornado.web
import tornado.websocket
from tornado.log import access_log

from web.health import HEALTH_PATH, HealthHandler
from web.lessons import (
    ATTENDANCE_ROUTE,
    LESSON_ROUTE,
    STATIC_DIR,
    STATIC_URL,
    AttendanceHandler,
    LessonHandler,
    LessonViewHandler,
)
from web.prometheus import MetricsHandler
from web.roll_call import PresenceReader

METRICS_PATH = r"/metrics"
HTTP_SWITCHING_PROTOCOLS = 101
HTTP_BAD_REQUEST = 400
HTTP_SERVER_ERROR = 500
HTTP_SERVICE_UNAVAILABLE = 503


def log_request(handler: tornado.web.RequestHandler) -> None:
    """Tornado's access-log line (the application's ``log_function``), but at DEBUG for two
    answers of the Engine.IO handler that come once per device at the start of the hour: a
    WebSocket's 101, which its connect line says too, and a 503 past --max-connections, counted
    in /metrics and summed up in one WARNING per interval (protocol/admission.py)."""
    status = handler.get_status()
    if isinstance(handler, tornado.websocket.WebSocketHandler) and status in (
        HTTP_SWITCHING_PROTOCOLS, HTTP_SERVICE_UNAVAILABLE
    ):
        level = logging.DEBUG
    elif status < HTTP_BAD_REQUEST:
        level = logging.INFO
    elif status < HTTP_SERVER_ERROR:
        level = logging.WARNING
    else:
        level = logging.ERROR
    if access_log.isEnabledFor(level):
        access_log.log(level, "%d %s %.2fms", status, handler._request_summary(),
                       1000.0 * handler.request.request_time())


def routes(
    admin_token: str | None,
    reader: PresenceReader,
    check: Callable[[], Awaitable[Mapping[str, str | None]]],
) -> list[tornado.web.URLSpec]:
    """The routes server.build() mounts next to Socket.IO. `check` probes the backends for
    /healthz; the lesson views answer 404 without an `admin_token`."""
    admin = {"admin_token": admin_token}
    return [
        tornado.web.url(HEALTH_PATH, HealthHandler, {"check": check}),
        tornado.web.url(METRICS_PATH, MetricsHandler),
        tornado.web.url(r"/lessons/([^/]+)", LessonHandler, {**admin, "reader": reader},
                        name=LESSON_ROUTE),
        tornado.web.url(r"/lessons/([^/]+)/view", LessonViewHandler, admin),
        tornado.web.url(r"/lessons/([^/]+)/attendance\.csv", AttendanceHandler,
                        {**admin, "reader": reader}, name=ATTENDANCE_ROUTE),
        tornado.web.url(STATIC_URL + r"(.*)", tornado.web.StaticFileHandler,
                        {"path": str(STATIC_DIR)}),
    ]
