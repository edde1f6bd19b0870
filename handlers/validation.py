"""The shape of a join_lesson request (join_lesson.md, "Request"), checked before any I/O.

A teacher's `user_id` is also the name of a key the join writes (`{user_id}`), so one that would
name another key rollcall writes is refused too (join_lesson.md, "Ids never name another key").
"""

from __future__ import annotations

import sys
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from handlers.errors import InvalidRequest
from store.keys import MAX_ID_LENGTH, RESERVED_PREFIXES, is_reserved

ROLE_TEACHER = "teacher"
ID_FIELDS = ("user_id", "lesson_id")


@dataclass(frozen=True)
class JoinRequest:
    """A well-formed join_lesson payload."""

    user_id: str
    lesson_id: str
    access_token: str | None
    role: str

    @property
    def is_teacher(self) -> bool:
        return self.role == ROLE_TEACHER


def is_valid_text(value: str) -> bool:
    """Whether `value` can be stored as is: PostgreSQL text holds no NUL character, and Redis
    and PostgreSQL both need valid UTF-8 (JSON can carry unpaired surrogates, which are not)."""
    if not value or "\x00" in value:
        return False
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def parse_join_request(args: tuple[Any, ...], participant_roles: Collection[str]) -> JoinRequest:
    """The request carried by the event's arguments, or InvalidRequest naming what is wrong.

    Exactly one argument, an object; fields beyond the four of the contract are ignored.
    """
    if len(args) != 1 or not isinstance(args[0], dict):
        raise InvalidRequest("the request must be one object")
    data = args[0]
    ids = {}
    for name in ID_FIELDS:
        value = data.get(name)
        if not isinstance(value, str):
            raise InvalidRequest(f"{name} must be a string")
        if len(value) > MAX_ID_LENGTH or not is_valid_text(value):
            raise InvalidRequest(f"{name} must be 1 to {MAX_ID_LENGTH} characters of text")
        ids[name] = value
    # held for the connection's life (its record, its entries, its room): one object for all
    # the sockets of a lesson, not a copy decoded from each request
    ids["lesson_id"] = sys.intern(ids["lesson_id"])
    token = data.get("access_token")
    if token is not None and not isinstance(token, str):
        raise InvalidRequest("access_token must be a string or null")
    role = data.get("role")
    if not isinstance(role, str) or (role != ROLE_TEACHER and role not in participant_roles):
        raise InvalidRequest("role must be teacher or a participant role")
    role = sys.intern(role)
    if role == ROLE_TEACHER and is_reserved(ids["user_id"]):
        raise InvalidRequest(
            f"a teacher's user_id may not start with any of {', '.join(RESERVED_PREFIXES)}"
        )
    return JoinRequest(access_token=token, role=role, **ids)
