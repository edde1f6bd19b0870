"""The platform's rows a test needs: a lesson and the seats of its enrolled students."""

from __future__ import annotations

from collections.abc import Mapping

import psycopg2.extensions


def add_lesson(
    database: psycopg2.extensions.connection,
    lesson_id: str,
    seat_count: int,
    seats: Mapping[str, int | None] | None = None,
) -> str:
    """Insert `lesson_id` with `seat_count` seats, and a student_attend row (student -> seat)
    for each of `seats`; returns the lesson id."""
    with database.cursor() as cur:
        cur.execute("INSERT INTO lesson (id, seat_count) VALUES (%s, %s)", (lesson_id, seat_count))
        for student, seat in (seats or {}).items():
            cur.execute(
                "INSERT INTO student_attend (lesson_id, student_id, seat) VALUES (%s, %s, %s)",
                (lesson_id, student, seat),
            )
    return lesson_id
