"""rollcall's HTTP surface besides Socket.IO: /healthz, /metrics and the admin lesson views."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

import tornado.web

from web.access import log_request
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

__all__ = ["METRICS_PATH", "log_request", "routes"]
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
