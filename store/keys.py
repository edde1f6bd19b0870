"""Names of every Redis key rollcall writes, and the prefixes an id may therefore not start with.

The reader-facing names (docs/redis-keys.md) are a contract with the platform's other services.
rollcall's own bookkeeping (process liveness, what each process holds, rosters) lives under one
prefix of its own, so that it can never collide with them. The teacher's `{user_id}` key and the
participant's `{client_id}` key are the bare ids: an id that starts with any prefix below would
write into another key's hash, so it is refused (join_lesson.md, "Ids never name another key").
"""

from __future__ import annotations

#: The longest id (user_id, lesson_id, client id) a key name may embed (join_lesson.md, "Request").
MAX_ID_LENGTH = 128

SEAT_KEY = "lesson_seat_{lesson_id}"
TEACHER_KEY = "lesson_teacher_{lesson_id}"
STUDENTS_KEY = "lesson_student_{lesson_id}"

#: Every bookkeeping key of rollcall's own starts with this (after `--key-prefix`).
BOOKKEEPING_PREFIX = "rollcall:"
#: One hash per lesson: field `{user_id}` -> that participant's roster record (store/roster.py).
ROSTER_KEY = BOOKKEEPING_PREFIX + "roster:{lesson_id}"
#: One hash per lesson: field `[user_id, client_id]` (JSON) -> the record of a join whose token
#: does not vouch for its user_id, an unverified claim (store/roster.py).
UNVERIFIED_KEY = BOOKKEEPING_PREFIX + "unverified:{lesson_id}"

# Process liveness and what each process holds (docs/redis-keys.md, "Lifecycle"); `{process_id}`
# is random per start of a process (store/liveness.py).
#: set of the ids of every process that registered and has not been swept or retired
PROCESSES_KEY = BOOKKEEPING_PREFIX + "processes"
#: string with a short TTL, renewed while the process runs: gone means the process is dead
ALIVE_KEY = BOOKKEEPING_PREFIX + "alive:{process_id}"
#: hash of the presence entries the process wrote: held field (an entry) -> the sid holding it
HELD_KEY = BOOKKEEPING_PREFIX + "held:{process_id}"
#: string naming the process that swept (or is sweeping) a dead one; its scripts then refuse
SWEPT_KEY = BOOKKEEPING_PREFIX + "swept:{process_id}"

#: The one list of prefixes that no `{user_id}` or `{client_id}` may start with.
RESERVED_PREFIXES = (
    SEAT_KEY.removesuffix("{lesson_id}"),
    TEACHER_KEY.removesuffix("{lesson_id}"),
    STUDENTS_KEY.removesuffix("{lesson_id}"),
    BOOKKEEPING_PREFIX,
)


def is_reserved(key_id: str) -> bool:
    """Whether `key_id`, used as a bare key name, would land in a key family rollcall writes."""
    return key_id.startswith(RESERVED_PREFIXES)
