"""rollcall's HTTP surface besides Socket.IO: /metrics and the admin lesson views."""

from __future__ import annotations

import tornado.web

from config import Config
from web.lessons import (
    ATTENDANCE_ROUTE,
    LESSON_ROUTE,
    STATIC_DIR,
    STATIC_URL,
    AttendanceHandler,
    LessonHandler,
    LessonViewHandler,
)
from web.presence import PresenceReader
from web.prometheus import MetricsHandler

METRICS_PATH = r"/metrics"


def routes(config: Config, reader: PresenceReader) -> list[tornado.web.URLSpec]:
    """The routes server.build() mounts next to Socket.IO and /healthz."""
    admin = {"admin_token": config.admin_token}
    return [
        tornado.web.url(METRICS_PATH, MetricsHandler),
        tornado.web.url(r"/lessons/([^/]+)", LessonHandler, {**admin, "reader": reader},
                        name=LESSON_ROUTE),
        tornado.web.url(r"/lessons/([^/]+)/view", LessonViewHandler, admin),
        tornado.web.url(r"/lessons/([^/]+)/attendance\.csv", AttendanceHandler,
                        {**admin, "reader": reader}, name=ATTENDANCE_ROUTE),
        tornado.web.url(STATIC_URL + r"(.*)", tornado.web.StaticFileHandler,
                        {"path": str(STATIC_DIR)}),
    ]
