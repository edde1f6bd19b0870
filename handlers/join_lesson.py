"""The join_lesson event (join_lesson.md): a teacher or a participant joins a live lesson.

Order of effects, so that a failed join writes nothing: the request and its token are checked
before any I/O; then one PostgreSQL lookup (the lesson and the caller's seat); then one Redis
script run (the seat map and the presence keys, atomically); only then the Socket.IO room and
session, which cannot fail, and the Mixpanel event, which is queued and never awaited.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection
from typing import TYPE_CHECKING, Any

import metrics
from handlers.errors import Code, JoinError, LessonNotFound, Unavailable
from handlers.tokens import TokenVerifier
from handlers.validation import JoinRequest, parse_join_request
from store.errors import StoreUnavailable
from store.lessons import LessonStore
from store.presence import Join, ParticipantJoin, PresenceStore, SeatsOnly, TeacherJoin
from tracking import Tracker

if TYPE_CHECKING:
    from protocol import Server

log = logging.getLogger("rollcall.join_lesson")

EVENT = "join_lesson"
RECONNECT_EVENT = "reconnect"
STATUS_SUCCESS = "SUCCESS"
STATUS_ERROR = "ERROR"
INTERNAL_MESSAGE = "internal error"
UNAVAILABLE_MESSAGE = "the lesson store is not answering; try again"
SESSION_SEAT = "seat"
SESSION_CLIENT_ID = "client_id"
SESSION_ROLE = "role"


def success() -> dict[str, Any]:
    return {"status": STATUS_SUCCESS, "data": {}}


def error(code: Code, message: str) -> dict[str, Any]:
    return {"status": STATUS_ERROR, "data": {"code": code.value, "message": message}}


class JoinLesson:
    """Handles join_lesson events; constructed with its collaborators so it can be driven by any
    server implementing the pinned `protocol.Server` API."""

    def __init__(
        self,
        sio: Server,
        lessons: LessonStore,
        presence: PresenceStore,
        tokens: TokenVerifier,
        tracker: Tracker,
        participant_roles: Collection[str],
    ) -> None:
        self._sio = sio
        self._lessons = lessons
        self._presence = presence
        self._tokens = tokens
        self._tracker = tracker
        self._participant_roles = frozenset(participant_roles)

    async def handle(self, sid: str, *args: Any) -> dict[str, Any]:
        """The event handler: returns the ack, and logs one line per join."""
        started = time.perf_counter()
        request: JoinRequest | None = None
        detail = ""
        try:
            request = parse_join_request(args, self._participant_roles)
            await self._join(sid, request)
        except JoinError as exc:
            ack, outcome, detail = error(exc.code, exc.message), exc.code.value, exc.message
            if isinstance(exc.__cause__, StoreUnavailable):
                detail = str(exc.__cause__)
        except Exception:
            log.exception("join_lesson failed unexpectedly (sid %s)", sid)
            ack, outcome = error(Code.INTERNAL, INTERNAL_MESSAGE), Code.INTERNAL.value
        else:
            ack, outcome = success(), STATUS_SUCCESS
        seconds = time.perf_counter() - started
        role = request.role if request else metrics.UNKNOWN_ROLE
        metrics.record_join(role, outcome, seconds)
        fields = {
            "event": "join",
            "sid": sid,
            "role": role,
            "lesson_id": request.lesson_id if request else None,
            "outcome": outcome,
            "duration_ms": round(seconds * 1000, 2),
        }
        if detail:
            fields["reason"] = detail
        log.info("join_lesson", extra=fields)
        return ack

    async def _join(self, sid: str, request: JoinRequest) -> None:
        client_id = None
        if not request.is_teacher and request.access_token is not None:
            client_id = self._tokens.client_id(request.access_token)
        try:
            lesson = await self._lessons.lookup(request.lesson_id, request.user_id)
            if lesson is None:
                raise LessonNotFound(f"no lesson {request.lesson_id!r}")
            join: Join
            if request.is_teacher:
                join = TeacherJoin(request.lesson_id, lesson.seat_count, sid, request.user_id)
            elif client_id is not None:
                join = ParticipantJoin(
                    request.lesson_id, lesson.seat_count, sid, client_id, request.role
                )
            else:
                join = SeatsOnly(request.lesson_id, lesson.seat_count)
            outcome = await self._presence.join(join)
        except StoreUnavailable as exc:
            raise Unavailable(UNAVAILABLE_MESSAGE) from exc

        await self._sio.enter_room(sid, request.lesson_id)
        session = await self._sio.get_session(sid)
        if lesson.seat is not None:
            session[SESSION_SEAT] = lesson.seat
        if client_id is not None:
            session[SESSION_CLIENT_ID] = client_id
            session[SESSION_ROLE] = request.role
        await self._sio.save_session(sid, session)

        if outcome.reconnect and client_id is not None:
            self._tracker.track(
                client_id, RECONNECT_EVENT, {"lesson_id": request.lesson_id, "role": request.role}
            )
