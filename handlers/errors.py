"""The error codes of join_lesson's ack, as exception types the handler maps in one place."""

from __future__ import annotations

from enum import StrEnum


class Code(StrEnum):
    """The `code` of an ERROR ack (join_lesson.md, "Response")."""

    INVALID_REQUEST = "INVALID_REQUEST"
    LESSON_NOT_FOUND = "LESSON_NOT_FOUND"
    INVALID_TOKEN = "INVALID_TOKEN"
    UNAVAILABLE = "UNAVAILABLE"
    RATE_LIMITED = "RATE_LIMITED"
    INTERNAL = "INTERNAL"


class JoinError(Exception):
    """A join refused with a code the client can act on; its message is safe to send."""

    code: Code

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequest(JoinError):
    code = Code.INVALID_REQUEST


class LessonNotFound(JoinError):
    code = Code.LESSON_NOT_FOUND


class InvalidToken(JoinError):
    code = Code.INVALID_TOKEN


class Unavailable(JoinError):
    code = Code.UNAVAILABLE


class RateLimited(JoinError):
    code = Code.RATE_LIMITED


class SeatCountTooLarge(JoinError):
    """The lesson's row asks for more seats than a seat map may hold (store.lessons
    MAX_SEAT_COUNT): a fault of the row, not of the request, hence INTERNAL."""

    code = Code.INTERNAL
