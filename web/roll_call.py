"""Reads one lesson's live presence back from the Redis keys that join_lesson writes, and its roll
call: the enrolment in PostgreSQL against the roster records in Redis.

A join whose token does not vouch for its `user_id` is an unverified claim (store/roster.py): it
is listed apart, never as the attendance of the student it names.

The admin view shows exactly what the platform's other services would read, so it reads the
same keys (named in store.presence) rather than any in-process state: with several rollcall
processes behind a load balancer, any one of them shows the whole lesson.
"""

from __future__ import annotations

import asyncio
import datetime
from dataclasses import dataclass

from store.lessons import MAX_SEAT_COUNT, Enrolment, LessonStore
from store.presence import LessonKeys, PresenceStore
from store.roster import RosterRecord, parse_claims, parse_roster

PRESENT = "present"
ABSENT = "absent"
LEFT = "left"
STATUSES = (PRESENT, ABSENT, LEFT)
#: the status of an unverified claim: never one of STATUSES, so that nothing counts it as the
#: attendance of the student it names
UNVERIFIED = "unverified"


@dataclass(frozen=True)
class Teacher:
    user_id: str
    sid: str


@dataclass(frozen=True)
class Participant:
    """A participant of the lesson; `role` is None once their `{client_id}` key has expired."""

    client_id: str
    sid: str
    role: str | None


@dataclass(frozen=True)
class RosterRow:
    """One line of the roll call: an enrolled student, a participant who joined without being
    enrolled, or an unverified claim (`verified` false)."""

    user_id: str
    seat: int | None
    enrolled: bool
    status: str
    client_id: str | None
    first_joined_at: datetime.datetime | None
    last_seen_at: datetime.datetime | None
    reconnects: int
    #: false for an unverified claim: a join whose token did not vouch for `user_id`
    verified: bool = True

    #: the fields, in the order of the JSON object and of the CSV columns
    FIELDS = (
        "user_id", "seat", "enrolled", "status", "client_id",
        "first_joined_at", "last_seen_at", "reconnects", "verified",
    )

    @classmethod
    def of(cls, user_id: str, seat: int | None, enrolled: bool,
           record: RosterRecord | None) -> RosterRow:
        if record is None:
            return cls(user_id, seat, enrolled, ABSENT, None, None, None, 0)
        return cls(
            user_id, seat, enrolled, PRESENT if record.live else LEFT, record.client_id,
            record.first_joined_at, record.last_seen_at, record.joins - 1,
        )

    @classmethod
    def claim(cls, record: RosterRecord, enrolled: bool) -> RosterRow:
        """An unverified claim to be `record.user_id`: no seat and no status of that user's."""
        return cls(
            record.user_id, None, enrolled, UNVERIFIED, record.client_id,
            record.first_joined_at, record.last_seen_at, record.joins - 1, verified=False,
        )

    def as_json(self) -> dict[str, object]:
        return {
            "user_id": self.user_id,
            "seat": self.seat,
            "enrolled": self.enrolled,
            "status": self.status,
            "client_id": self.client_id,
            "first_joined_at": _iso(self.first_joined_at),
            "last_seen_at": _iso(self.last_seen_at),
            "reconnects": self.reconnects,
            "verified": self.verified,
        }


def _iso(moment: datetime.datetime | None) -> str | None:
    return None if moment is None else moment.isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class LessonPresence:
    lesson_id: str
    teachers: list[Teacher]
    participants: list[Participant]
    seats: dict[str, str]
    #: from the `lesson` row; None when PostgreSQL has no such lesson
    seat_count: int | None
    #: enrolled students first (by seat, unseated last), then the others; None: roster off
    roster: list[RosterRow] | None
    #: the unverified claims, by user_id then client id; None: roster off
    unverified: list[RosterRow] | None = None

    def chart_seats(self) -> int | None:
        """How many seat cells the page draws: `seat_count` held to what a seat map may hold,
        so that an absurd `lesson` row (10**9 seats) cannot hang an admin's browser."""
        if self.seat_count is None:
            return None
        return max(0, min(self.seat_count, MAX_SEAT_COUNT))

    def counts(self) -> dict[str, int] | None:
        """How many enrolled students are present, absent and left (they add up to enrolled);
        participants who are not enrolled are not counted."""
        if self.roster is None:
            return None
        enrolled = [row for row in self.roster if row.enrolled]
        counts = {"enrolled": len(enrolled)}
        for status in STATUSES:
            counts[status] = sum(row.status == status for row in enrolled)
        return counts

    def as_json(self) -> dict[str, object]:
        """The document GET /lessons/{lesson_id} answers."""
        return {
            "lesson_id": self.lesson_id,
            "teachers": [{"user_id": t.user_id, "sid": t.sid} for t in self.teachers],
            "participants": [
                {"client_id": p.client_id, "sid": p.sid, "role": p.role} for p in self.participants
            ],
            "seats": self.seats,
            "seat_count": self.seat_count,
            "chart_seats": self.chart_seats(),
            "roster": None if self.roster is None else [row.as_json() for row in self.roster],
            "unverified": (
                None if self.unverified is None else [row.as_json() for row in self.unverified]
            ),
            "counts": self.counts(),
        }


def _seat_order(seat: str) -> tuple[int, int | str]:
    """Seats "1" … "n" in numeric order, any other field after them."""
    return (0, int(seat)) if seat.isdigit() else (1, seat)


def roll_call(enrolment: Enrolment | None, records: dict[str, RosterRecord]) -> list[RosterRow]:
    """Every enrolled student (by seat, those without one last), then everyone who joined
    without being enrolled (by user_id)."""
    seats = {} if enrolment is None else enrolment.seats
    enrolled = sorted(
        seats.items(), key=lambda item: (item[1] is None, item[1] or 0, item[0])
    )
    rows = [RosterRow.of(user_id, seat, True, records.get(user_id)) for user_id, seat in enrolled]
    rows += [
        RosterRow.of(user_id, None, False, records[user_id])
        for user_id in sorted(records) if user_id not in seats
    ]
    return rows


def unverified_claims(enrolment: Enrolment | None, claims: list[RosterRecord]
                      ) -> list[RosterRow]:
    """The unverified claims, in the order given, each saying whether it names an enrolled
    student."""
    seats = {} if enrolment is None else enrolment.seats
    return [RosterRow.claim(record, record.user_id in seats) for record in claims]


class PresenceReader:
    """Reads the presence of one lesson back from the keys PresenceStore writes, and its roll call
    from those and the enrolment."""

    def __init__(self, store: PresenceStore, lessons: LessonStore) -> None:
        self._store = store
        self._lessons = lessons

    async def lesson(self, lesson_id: str) -> LessonPresence:
        """The lesson's teachers, participants, seat map and roll call; empty when nobody has
        joined. One Redis read (two round trips) and one PostgreSQL query, concurrently;
        StoreUnavailable if either does not answer."""
        keys, enrolment = await asyncio.gather(
            self._store.read_lesson(lesson_id),
            self._lessons.enrolment(lesson_id),
            return_exceptions=True,
        )
        for result in (keys, enrolment):
            if isinstance(result, BaseException):
                raise result  # Redis's first when both fail
        assert isinstance(keys, LessonKeys) and not isinstance(enrolment, BaseException)
        return self._presence(lesson_id, keys, enrolment)

    def _presence(self, lesson_id: str, keys: LessonKeys,
                  enrolment: Enrolment | None) -> LessonPresence:
        roster = unverified = None
        if self._store.roster_ttl:
            roster = roll_call(enrolment, parse_roster(keys.roster))
            unverified = unverified_claims(enrolment, parse_claims(keys.unverified))
        return LessonPresence(
            lesson_id=lesson_id,
            teachers=[Teacher(user_id, sid) for user_id, sid in sorted(keys.teachers.items())],
            participants=[
                Participant(client_id, keys.students[client_id], profile.get("role"))
                for client_id, profile in keys.profiles.items()
            ],
            seats={seat: keys.seats[seat] for seat in sorted(keys.seats, key=_seat_order)},
            seat_count=None if enrolment is None else enrolment.seat_count,
            roster=roster,
            unverified=unverified,
        )
