"""Reads one lesson's live presence back from the Redis keys that join_lesson writes.

The admin view shows exactly what the platform's other services would read, so it reads the
same keys (named in store.presence) rather than any in-process state: with several rollcall
processes behind a load balancer, any one of them shows the whole lesson.
"""

from __future__ import annotations

from dataclasses import dataclass

from store.presence import PresenceStore


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
class LessonPresence:
    lesson_id: str
    teachers: list[Teacher]
    participants: list[Participant]
    seats: dict[str, str]

    def as_json(self) -> dict[str, object]:
        """The document GET /lessons/{lesson_id} answers."""
        return {
            "lesson_id": self.lesson_id,
            "teachers": [{"user_id": t.user_id, "sid": t.sid} for t in self.teachers],
            "participants": [
                {"client_id": p.client_id, "sid": p.sid, "role": p.role} for p in self.participants
            ],
            "seats": self.seats,
        }


def _seat_order(seat: str) -> tuple[int, int | str]:
    """Seats "1" … "n" in numeric order, any other field after them."""
    return (0, int(seat)) if seat.isdigit() else (1, seat)


class PresenceReader:
    """Reads the presence of one lesson back from the keys PresenceStore writes."""

    def __init__(self, store: PresenceStore) -> None:
        self._store = store

    async def lesson(self, lesson_id: str) -> LessonPresence:
        """The lesson's teachers, participants and seat map; empty when nobody has joined."""
        keys = await self._store.read_lesson(lesson_id)
        return LessonPresence(
            lesson_id=lesson_id,
            teachers=[Teacher(user_id, sid) for user_id, sid in sorted(keys.teachers.items())],
            participants=[
                Participant(client_id, keys.students[client_id], profile.get("role"))
                for client_id, profile in keys.profiles.items()
            ],
            seats={seat: keys.seats[seat] for seat in sorted(keys.seats, key=_seat_order)},
        )
