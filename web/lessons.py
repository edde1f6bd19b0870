"""GET /lessons/{lesson_id} (live presence and roll call as JSON), /lessons/{lesson_id}/view (a
seating chart of it) and /lessons/{lesson_id}/attendance.csv (the roll call as a file).

All are admin-only (see web.auth). The page is static HTML plus a script that polls the JSON
endpoint twice a second: the simplest live view that works through any proxy, and whose state is
always what Redis and PostgreSQL hold rather than a stream that could miss an update.
"""

from __future__ import annotations

import datetime
import json
import pathlib

import tornado.template
import tornado.web

from store.errors import StoreUnavailable
from store.keys import MAX_ID_LENGTH
from web.attendance import CONTENT_TYPE as CSV_CONTENT_TYPE
from web.attendance import attendance_csv, content_disposition
from web.auth import HTTP_NOT_FOUND, AdminHandler, AdminPageHandler
from web.roll_call import LessonPresence, PresenceReader

HERE = pathlib.Path(__file__).resolve().parent
TEMPLATES = tornado.template.Loader(str(HERE / "templates"))
STATIC_DIR = HERE / "static"
STATIC_URL = "/static/"
POLL_INTERVAL_MS = 500
LESSON_ROUTE = "lesson"
ATTENDANCE_ROUTE = "attendance"
HTTP_SERVICE_UNAVAILABLE = 503
# The page loads only its own script and style, and talks only to this origin.
PAGE_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def _checked(lesson_id: str) -> str:
    if len(lesson_id) > MAX_ID_LENGTH:
        raise tornado.web.HTTPError(HTTP_NOT_FOUND)
    return lesson_id


class RosterOff(tornado.web.HTTPError):
    """The attendance file of a server whose roster is off (--roster-ttl 0)."""

    def __init__(self) -> None:
        super().__init__(HTTP_NOT_FOUND, reason="the roster is off (--roster-ttl 0)")


class LessonReadHandler(AdminHandler):
    """Base of the handlers that read a lesson: 503 naming the store that does not answer."""

    def initialize(self, admin_token: str | None, reader: PresenceReader) -> None:
        super().initialize(admin_token)
        self.reader = reader

    async def read(self, lesson_id: str) -> LessonPresence | None:
        """The lesson, or None after answering 503."""
        self.set_header("Cache-Control", "no-store")
        try:
            return await self.reader.lesson(_checked(lesson_id))
        except StoreUnavailable as exc:
            self.set_status(HTTP_SERVICE_UNAVAILABLE)
            self.set_header("Content-Type", "application/json")
            self.finish(json.dumps({"status": "unavailable", exc.backend: exc.reason}))
            return None


class LessonHandler(LessonReadHandler):
    """The lesson's teachers, participants (sid, role), seat map and roll call, as JSON."""

    async def get(self, lesson_id: str) -> None:
        presence = await self.read(lesson_id)
        if presence is not None:
            self.set_header("Content-Type", "application/json")
            self.finish(json.dumps(presence.as_json()))


class AttendanceHandler(LessonReadHandler):
    """The roll call as CSV, downloaded as a file named after the lesson and today's date (UTC)."""

    async def get(self, lesson_id: str) -> None:
        presence = await self.read(lesson_id)
        if presence is None:
            return
        if presence.roster is None:
            raise RosterOff()
        today = datetime.datetime.now(datetime.UTC).date()
        self.set_header("Content-Type", CSV_CONTENT_TYPE)
        self.set_header("Content-Disposition", content_disposition(presence.lesson_id, today))
        self.set_header("X-Content-Type-Options", "nosniff")
        self.finish(attendance_csv([*presence.roster, *(presence.unverified or ())]))


class LessonViewHandler(AdminPageHandler):
    """The HTML page, a seating chart; its script (static/lesson_view.js) fills it from the JSON
    endpoint."""

    def get(self, lesson_id: str) -> None:
        lesson_id = _checked(lesson_id)
        self.set_header("Content-Security-Policy", PAGE_POLICY)
        self.set_header("Cache-Control", "no-store")
        self.set_header("Referrer-Policy", "no-referrer")
        self.set_header("X-Content-Type-Options", "nosniff")
        page = TEMPLATES.load("lesson_view.html").generate(
            lesson_id=lesson_id,
            source=self.reverse_url(LESSON_ROUTE, lesson_id),
            attendance=self.reverse_url(ATTENDANCE_ROUTE, lesson_id),
            static_url=STATIC_URL,
            poll_interval_ms=POLL_INTERVAL_MS,
        )
        self.finish(page)
