"""Presence written again from the live connections, after Redis lost it (store/reassert.lua).

Redis holds a projection of the set of live connections; a restart without persistence, a
failover to a replica that lagged, or a FLUSHALL loses it while every client stays connected.
The heartbeat notices (handlers/healing.py) and has each live connection's last join written
again through this module, where it is missing, never over a newer join's value.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from store.keys import SEAT_KEY, STUDENTS_KEY, TEACHER_KEY
from store.presence import (
    KIND_PARTICIPANT,
    KIND_ROSTER,
    KIND_TEACHER,
    PRESENCE_TTL,
    Entry,
    Join,
    ParticipantEntry,
    ParticipantJoin,
    PresenceStore,
    Script,
    TeacherEntry,
    held_field,
)

REASSERT_SCRIPT = Script.load("reassert.lua")
#: most items (entries and seat maps) one script run writes again: one round trip each, short
#: enough that Redis keeps serving joins in between (as the sweep's batches)
REASSERT_BATCH = 500


@dataclass(frozen=True)
class Reassertion:
    """One live connection's last join, and those of its entries that the connection is the
    latest holder of on this process: what is written again for it."""

    join: Join
    entries: tuple[Entry, ...]

    @property
    def size(self) -> int:
        """Its items in a batch: its entries and (at most) one seat map."""
        return len(self.entries) + 1


@dataclass(frozen=True)
class Reasserted:
    """What one or more runs of the script wrote again: `seat_maps` created, presence `fields`
    written, roster records written (`rosters`), and the entries now `held` by this process."""

    seat_maps: int = 0
    fields: int = 0
    rosters: int = 0
    held: int = 0

    @property
    def keys(self) -> int:
        """Everything re-written: what the counter of re-written keys adds."""
        return self.seat_maps + self.fields + self.rosters

    def __add__(self, other: Reasserted) -> Reasserted:
        return Reasserted(
            self.seat_maps + other.seat_maps,
            self.fields + other.fields,
            self.rosters + other.rosters,
            self.held + other.held,
        )


async def reassert(store: PresenceStore, batch: Sequence[Reassertion]) -> Reasserted:
    """Write `batch` again (at most REASSERT_BATCH items) in one script run. Raises
    StoreUnavailable when Redis does not answer, ProcessSwept when this process was swept."""
    if sum(claim.size for claim in batch) > REASSERT_BATCH:
        raise ValueError(f"a re-assertion batch holds at most {REASSERT_BATCH} items")
    book = store.bookkeeping
    seat_counts = {claim.join.lesson_id: claim.join.seat_count for claim in batch}
    keys = [*book.keys, *(store.key(SEAT_KEY.format(lesson_id=lesson)) for lesson in seat_counts)]
    argv: list[str | int] = [PRESENCE_TTL, *book.argv, len(seat_counts), *seat_counts.values()]
    for claim in batch:
        join = claim.join
        for entry in claim.entries:
            lesson = entry.lesson_id
            if isinstance(entry, TeacherEntry):
                keys += (store.key(TEACHER_KEY.format(lesson_id=lesson)), store.key(entry.user_id))
                argv += (KIND_TEACHER, entry.user_id, join.sid, held_field(entry), lesson)
            elif isinstance(entry, ParticipantEntry):
                assert isinstance(join, ParticipantJoin)
                keys += (
                    store.key(STUDENTS_KEY.format(lesson_id=lesson)),
                    store.key(entry.client_id),
                )
                argv += (KIND_PARTICIPANT, entry.client_id, join.sid, held_field(entry), join.role)
            else:  # a roster record, or an unverified claim: kept alike (store/roster.py)
                assert isinstance(join, ParticipantJoin)
                key, field = store.record_place(entry)
                keys.append(key)
                argv += (KIND_ROSTER, field, join.sid, held_field(entry), join.client_id)
    (result,) = await store.run_script(REASSERT_SCRIPT, [(len(keys), *keys, *argv)])
    if isinstance(result, Exception):
        raise store.script_error(result, book.process_id)
    seat_maps, fields, rosters, held = (int(value) for value in result)
    return Reasserted(seat_maps, fields, rosters, held)
