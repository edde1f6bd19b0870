"""The join_lesson event (join_lesson.md): a teacher or a participant joins a live lesson.

Order of effects, so that a failed join writes nothing: the request and its token (for a teacher,
its own teacher token, unless `--teacher-auth none`) are checked before any I/O; then one
PostgreSQL lookup (the lesson and the caller's seat); then one Redis script run (the seat map and
the presence keys, atomically); only then the Socket.IO room and session, which cannot fail, and
the Mixpanel event, which is queued and never awaited.

The Redis step and what follows run under the sid's `Connection` lock (handlers/connections.py): the
script also clears what the sid held in a lesson it joined before, and a disconnect racing the
join clears what the join wrote.

A participant's join is the attendance of its `user_id` only when the token vouches for that id
(handlers/tokens.py); otherwise it writes the same presence keys, but keeps an unverified claim in
place of the user's roster record (store/roster.py), and says so in its log line and in
`rollcall_unverified_joins_total`.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Collection
from typing import TYPE_CHECKING, Any

import metrics
from handlers.connections import ClientGone, Connection, Connections
from handlers.errors import Code, JoinError, LessonNotFound, SeatCountTooLarge, Unavailable
from handlers.limits import JoinRateLimiter
from handlers.tokens import TokenVerifier
from handlers.validation import JoinRequest, parse_join_request
from store.errors import StoreUnavailable
from store.lessons import MAX_SEAT_COUNT, LessonStore
from store.presence import (
    Join,
    JoinOutcome,
    ParticipantJoin,
    PresenceStore,
    SeatsOnly,
    TeacherJoin,
)
from tracking import Tracker

if TYPE_CHECKING:
    from protocol import Server

log = logging.getLogger(__name__)

EVENT = "join_lesson"
RECONNECT_EVENT = "reconnect"
STATUS_SUCCESS = "SUCCESS"
STATUS_ERROR = "ERROR"
INTERNAL_MESSAGE = "internal error"
UNAVAILABLE_MESSAGE = "the lesson store is not answering; try again"
SESSION_SEAT = "seat"
SESSION_CLIENT_ID = "client_id"
SESSION_ROLE = "role"
#: the outcome logged (and counted) for a join whose client disconnected before its answer
OUTCOME_GONE = "DISCONNECTED"


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
        connections: Connections,
        limiter: JoinRateLimiter,
        require_teacher_token: bool = True,
    ) -> None:
        self._sio = sio
        self._lessons = lessons
        self._presence = presence
        self._tokens = tokens
        self._tracker = tracker
        self._participant_roles = frozenset(participant_roles)
        self._connections = connections
        self._limiter = limiter
        self._require_teacher_token = require_teacher_token

    async def handle(self, sid: str, *args: Any) -> dict[str, Any]:
        """The event handler: returns the ack, and logs one line per join."""
        started = time.perf_counter()
        request: JoinRequest | None = None
        verified: bool | None = None
        detail = ""
        try:
            # First: a flood costs no validation, no I/O. The bucket is the Engine.IO session's,
            # so leaving and re-joining the namespace (a new sid) does not refill it.
            self._limiter.take(self._sio.engine_sid(sid) or sid)
            request = parse_join_request(args, self._participant_roles)
            verified = await self._join(sid, request)
        except ClientGone:
            # An expected race, not an error: the ack has no one to go to.
            ack, outcome = error(Code.INTERNAL, INTERNAL_MESSAGE), OUTCOME_GONE
        except JoinError as exc:
            ack, outcome, detail = error(exc.code, exc.message), exc.code.value, exc.message
            if isinstance(exc.__cause__, StoreUnavailable):
                detail = str(exc.__cause__)
        except Exception:
            log.exception("join_lesson failed unexpectedly (sid %s)", sid)
            ack, outcome = error(Code.INTERNAL, INTERNAL_MESSAGE), Code.INTERNAL.value
        else:
            ack, outcome = success(), STATUS_SUCCESS
            if verified is False:
                metrics.UNVERIFIED_JOINS.inc()
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
        if verified is not None:
            fields["verified"] = verified
        log.info("join_lesson", extra=fields)
        return ack

    async def _join(self, sid: str, request: JoinRequest) -> bool | None:
        """Join; returns whether the participant's token vouches for its user_id (None for a
        teacher or a participant without a token)."""
        client_id: str | None = None
        verified: bool | None = None
        if request.is_teacher:
            if self._require_teacher_token:
                self._tokens.check_teacher(request.access_token, request.user_id)
        elif request.access_token is not None:
            identity = self._tokens.verify(request.access_token)
            client_id, verified = identity.client_id, identity.vouches_for(request.user_id)
        record = self._connections.get(sid)
        try:
            lesson = await self._lessons.lookup(request.lesson_id, request.user_id)
        except StoreUnavailable as exc:
            raise Unavailable(UNAVAILABLE_MESSAGE) from exc
        if lesson is None:
            raise LessonNotFound(f"no lesson {request.lesson_id!r}")
        if lesson.seat_count > MAX_SEAT_COUNT:
            raise SeatCountTooLarge(
                f"seat_count {lesson.seat_count} is above the {MAX_SEAT_COUNT} a seat map holds"
            )
        async with record.lock:
            if record.gone:
                raise ClientGone(sid)
            join: Join
            if request.is_teacher:
                join = TeacherJoin(request.lesson_id, lesson.seat_count, sid, request.user_id)
            elif client_id is not None:
                join = ParticipantJoin(
                    request.lesson_id, lesson.seat_count, sid, client_id, request.role,
                    request.user_id, verified=bool(verified),
                )
            else:
                join = SeatsOnly(request.lesson_id, lesson.seat_count, sid)
            outcome = await self._write_presence(record, join)
            if record.gone:
                raise ClientGone(sid)  # its disconnect handler, waiting on the lock, clears it
            # From here on nothing yields to the loop: the sid is still connected.
            if record.lesson_id not in (None, request.lesson_id):
                await self._sio.leave_room(sid, record.lesson_id)
            await self._sio.enter_room(sid, request.lesson_id)
            record.lesson_id = request.lesson_id
            session = await self._sio.get_session(sid)
            for stale in (SESSION_SEAT, SESSION_CLIENT_ID, SESSION_ROLE):
                session.pop(stale, None)  # from a lesson this socket joined before
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
        return verified

    async def _write_presence(self, record: Connection, join: Join) -> JoinOutcome:
        """Run the join script, keeping `record.held` a superset of what Redis may hold for the
        sid at every await (the caller holds `record.lock`)."""
        leaving = record.leaving(join.lesson_id)
        written = frozenset(join.entries)
        before = record.held
        record.held = before | written  # before the script is sent: see handlers/connections.py
        try:
            if leaving:
                async with self._connections.successors(record.sid, leaving) as successors:
                    join = dataclasses.replace(join, leaving=leaving, successors=successors)
                    outcome = await self._presence.join(join)
            else:  # the common case, kept cheap: no lesson to leave, nobody to hand over to
                outcome = await self._presence.join(join)
        except StoreUnavailable as exc:
            # Redis may still run the script, even after a later one: keep its entry for good.
            record.doubtful |= written
            raise Unavailable(UNAVAILABLE_MESSAGE) from exc
        except Exception:
            record.held = before  # the script refused the join and wrote nothing
            raise
        record.held = (before - frozenset(leaving)) | written | record.doubtful
        self._connections.joined(record, join, leaving)
        return outcome
