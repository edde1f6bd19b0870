"""The join_lesson request rules and token verification, without I/O."""

from __future__ import annotations

import json
import logging
import time
import warnings
from typing import Any

import jwt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from handlers.errors import InvalidRequest, InvalidToken
from handlers.tokens import CACHE_SIZE, MAX_CACHED_TOKEN_LENGTH, TokenVerifier
from handlers.validation import MAX_ID_LENGTH, JoinRequest, parse_join_request
from store.presence import (
    ClaimEntry,
    ParticipantEntry,
    ParticipantJoin,
    RosterEntry,
    SeatsOnly,
    TeacherEntry,
    TeacherJoin,
)

ROLES = ("student", "observer")
#: 64 bytes: the "hs512" case signs with it, and PyJWT warns of an HS512 key shorter than that
SECRET = "unit-test-secret-of-64-bytes-long-enough-for-hs256-and-hs512-000"
#: under the 32 bytes RFC 7518 asks of an HS256 key
SHORT_SECRET = "short-secret"
# join_lesson.md, "Ids never name another key": the key families and rollcall's own bookkeeping.
RESERVED = ("lesson_seat_", "lesson_teacher_", "lesson_student_", "rollcall:")

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)
valid_ids = st.text(min_size=1, max_size=MAX_ID_LENGTH).filter(
    lambda s: "\x00" not in s and not any(0xD800 <= ord(c) <= 0xDFFF for c in s)
)
valid_requests = st.fixed_dictionaries(
    {
        "user_id": valid_ids,
        "lesson_id": valid_ids,
        "role": st.sampled_from(("teacher", *ROLES)),
    },
    optional={"access_token": st.none() | st.text()},
)


def conforms(data: Any) -> bool:
    """join_lesson.md's table, written independently of the code under test."""
    def is_id(value: Any) -> bool:
        return (
            isinstance(value, str) and 1 <= len(value) <= MAX_ID_LENGTH and "\x00" not in value
            and not any(0xD800 <= ord(c) <= 0xDFFF for c in value)
        )

    return (
        isinstance(data, dict)
        and is_id(data.get("user_id"))
        and is_id(data.get("lesson_id"))
        and (data.get("access_token") is None or isinstance(data.get("access_token"), str))
        and data.get("role") in ("teacher", *ROLES)
        and not (data["role"] == "teacher" and data["user_id"].startswith(RESERVED))
    )


@given(valid_requests.filter(conforms))
def test_every_conforming_request_is_accepted(data):
    parsed = parse_join_request((data,), ROLES)

    assert parsed == JoinRequest(
        data["user_id"], data["lesson_id"], data.get("access_token"), data["role"]
    )


@given(st.one_of(json_values, valid_requests.flatmap(
    lambda req: st.sampled_from(list(req)).flatmap(
        lambda field: json_values.map(lambda value: {**req, field: value})
    )
)))
def test_anything_else_is_invalid_request_and_nothing_worse(data):
    if conforms(data):
        assert isinstance(parse_join_request((data,), ROLES), JoinRequest)
    else:
        with pytest.raises(InvalidRequest):
            parse_join_request((data,), ROLES)


@given(st.lists(json_values, max_size=3).filter(lambda args: len(args) != 1))
def test_not_exactly_one_argument_is_invalid(args):
    with pytest.raises(InvalidRequest):
        parse_join_request(tuple(args), ROLES)


def test_extra_fields_are_ignored():
    data = {"user_id": "u", "lesson_id": "l", "role": "student", "device": "ios"}

    assert parse_join_request((data,), ROLES) == JoinRequest("u", "l", None, "student")


@pytest.mark.parametrize("prefix", RESERVED)
@pytest.mark.parametrize("user_id", ["{prefix}", "{prefix}X", "{prefix}lesson-1:x"])
def test_a_teachers_reserved_user_id_is_invalid(prefix, user_id):
    data = {"user_id": user_id.format(prefix=prefix), "lesson_id": "l", "role": "teacher"}

    with pytest.raises(InvalidRequest, match="user_id may not start with"):
        parse_join_request((data,), ROLES)


@pytest.mark.parametrize(
    "user_id", ["my_lesson_seat_X", "Lesson_seat_X", "lesson_seat", "rollcall", " rollcall:x"]
)
def test_an_id_that_only_looks_reserved_is_a_teachers_user_id(user_id):
    data = {"user_id": user_id, "lesson_id": "l", "role": "teacher"}

    assert parse_join_request((data,), ROLES).user_id == user_id


def test_a_participants_user_id_names_no_key_and_is_not_restricted():
    data = {"user_id": "lesson_seat_X", "lesson_id": "l", "role": "student"}

    assert parse_join_request((data,), ROLES).user_id == "lesson_seat_X"


def test_the_length_limit_counts_characters():
    data = {"user_id": "é" * MAX_ID_LENGTH, "lesson_id": "l", "role": "student"}

    assert parse_join_request((data,), ROLES).user_id == "é" * MAX_ID_LENGTH


def encode(claims: dict[str, Any], secret: str = SECRET, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, secret, algorithm=algorithm)


@pytest.mark.parametrize(
    ("claims", "client_id"),
    [
        ({"client_id": "c1"}, "c1"),
        ({"sub": "s1"}, "s1"),
        ({"client_id": "c1", "sub": "s1"}, "c1"),
        ({"client_id": 42, "sub": "s1"}, "s1"),
        ({"client_id": "", "sub": "s1"}, "s1"),
        ({"client_id": "c1", "exp": int(time.time()) + 86400}, "c1")  # collected long before run,
    ],
)
def test_token_client_id(claims, client_id):
    assert TokenVerifier(SECRET).client_id(encode(claims)) == client_id


@pytest.mark.parametrize(
    "access_token",
    [
        encode({"client_id": "c1"}, secret="another-secret-at-least-32-bytes-long"),
        encode({"client_id": "c1", "exp": int(time.time()) - 1}),
        encode({"name": "c1"}),
        encode({"client_id": 7}),
        encode({"client_id": "bad\x00"}),
        jwt.encode({"client_id": "c1"}, None, algorithm="none"),
        encode({"client_id": "c1"}, algorithm="HS512"),
        "a.b.c",
        "",
        "\ud800",
    ],
    ids=["forged", "expired", "no-claim", "int-claim", "nul-claim", "unsigned", "hs512",
         "malformed", "empty", "surrogate"],
)
def test_token_refused(access_token):
    with pytest.raises(InvalidToken):
        TokenVerifier(SECRET).client_id(access_token)


def test_without_a_secret_every_token_is_refused():
    with pytest.raises(InvalidToken):
        TokenVerifier(None).client_id(encode({"client_id": "c1"}))


@pytest.mark.parametrize("prefix", RESERVED)
@pytest.mark.parametrize("claim", ["client_id", "sub"])
def test_a_reserved_client_id_is_refused(prefix, claim):
    with pytest.raises(InvalidToken, match="reserved"):
        TokenVerifier(SECRET).client_id(encode({claim: f"{prefix}L1"}))


def test_a_reserved_client_id_does_not_fall_back_to_sub():
    with pytest.raises(InvalidToken, match="reserved"):
        TokenVerifier(SECRET).client_id(encode({"client_id": "lesson_student_L1", "sub": "c1"}))


@pytest.mark.parametrize(
    "claims",
    [
        {"client_id": "t1", "role": "teacher"},
        {"sub": "t1", "role": "teacher"},
        {"client_id": "t1", "sub": "other", "role": "teacher"},
        {"client_id": "t1", "role": "teacher", "exp": int(time.time()) + 86400},
    ],
)
def test_a_teachers_own_token_is_accepted(claims):
    TokenVerifier(SECRET).check_teacher(encode(claims), "t1")


@pytest.mark.parametrize(
    ("access_token", "message"),
    [
        (None, "needs the teacher's access token"),
        (encode({"client_id": "t1"}), "not a teacher's"),
        (encode({"client_id": "t1", "role": "student"}), "not a teacher's"),
        (encode({"client_id": "t1", "role": "Teacher"}), "not a teacher's"),
        (encode({"client_id": "t1", "role": ["teacher"]}), "not a teacher's"),
        (encode({"client_id": "t2", "role": "teacher"}), "not this teacher's"),
        (encode({"client_id": "other", "sub": "t1", "role": "teacher"}), "not this teacher's"),
        (encode({"client_id": "t1", "role": "teacher", "exp": int(time.time()) - 1}), "expired"),
        (encode({"client_id": "t1", "role": "teacher"}, "another-secret-at-least-32-bytes-long"),
         "does not verify"),
        (encode({"role": "teacher"}), "no client id"),
    ],
    ids=["no-token", "no-role", "student", "case", "role-list", "other-teacher", "sub-not-used",
         "expired", "forged", "no-client-id"],
)
def test_anything_but_the_teachers_own_token_is_refused(access_token, message):
    with pytest.raises(InvalidToken, match=message):
        TokenVerifier(SECRET).check_teacher(access_token, "t1")


def test_without_a_secret_no_teacher_token_is_accepted():
    with pytest.raises(InvalidToken):
        TokenVerifier(None).check_teacher(encode({"client_id": "t1", "role": "teacher"}), "t1")


def test_a_short_secret_is_said_once_and_no_token_warns(caplog):
    with pytest.warns(jwt.InsecureKeyLengthWarning):  # PyJWT warns whoever signs with it
        token = encode({"client_id": "c1"}, secret=SHORT_SECRET)
    filters = list(warnings.filters)

    with caplog.at_level(logging.WARNING, logger=TokenVerifier.__module__):
        verifier = TokenVerifier(SHORT_SECRET)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        client_ids = [verifier.client_id(token) for _ in range(3)]

    assert client_ids == ["c1"] * 3
    assert [r.getMessage() for r in caplog.records] == [
        "the access token secret is shorter than 32 bytes"
    ]
    assert warnings.filters == filters  # nothing process-wide was changed to get there


class Clock:
    """A wall clock the test moves by hand, starting at the real time (PyJWT reads the real one)."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def test_a_verified_token_is_kept_and_refused_from_the_cache_once_it_expires():
    clock = Clock()
    verifier = TokenVerifier(SECRET, clock=clock)
    expiry = int(clock.now) + 60
    token = encode({"client_id": "c1", "exp": expiry})
    assert verifier.client_id(token) == "c1"
    assert len(verifier) == 1
    clock.now = expiry - 0.5
    assert verifier.client_id(token) == "c1"  # from the cache, still valid
    clock.now = expiry  # PyJWT's rule: expired once now >= exp
    with pytest.raises(InvalidToken, match="expired"):
        verifier.client_id(token)
    assert len(verifier) == 0


def test_a_teachers_cached_token_is_still_checked_against_the_role_and_user_id():
    verifier = TokenVerifier(SECRET)
    token = encode({"client_id": "t1", "role": "teacher", "exp": int(time.time()) + 60})
    verifier.check_teacher(token, "t1")
    with pytest.raises(InvalidToken, match="not this teacher's"):
        verifier.check_teacher(token, "t2")
    student = encode({"client_id": "t1", "role": "student"})
    verifier.client_id(student)
    with pytest.raises(InvalidToken, match="not a teacher's"):
        verifier.check_teacher(student, "t1")


@pytest.mark.parametrize("claims", [
    {"client_id": "lesson_student_L1"},  # reserved
    {"sub": 7},  # no client id
    {"client_id": "c1", "exp": int(time.time()) - 1},  # expired
])
def test_a_refused_token_is_not_kept_and_refused_every_time(claims):
    verifier = TokenVerifier(SECRET)
    for _ in range(2):
        with pytest.raises(InvalidToken):
            verifier.client_id(encode(claims))
    assert len(verifier) == 0


def test_a_token_signed_with_another_secret_is_refused_after_the_right_one_was_kept():
    verifier = TokenVerifier(SECRET)
    verifier.client_id(encode({"client_id": "c1"}))
    with pytest.raises(InvalidToken, match="does not verify"):
        verifier.client_id(encode({"client_id": "c1"}, secret=SECRET[::-1]))


def test_the_cache_is_bounded_and_keeps_the_most_recently_used():
    verifier = TokenVerifier(SECRET)
    tokens = [encode({"client_id": f"c{i}"}) for i in range(CACHE_SIZE + 2)]
    for token in tokens[:CACHE_SIZE]:
        verifier.client_id(token)
    verifier.client_id(tokens[0])  # used again: now the most recent
    for token in tokens[CACHE_SIZE:]:
        verifier.client_id(token)
    assert len(verifier) == CACHE_SIZE
    assert tokens[0] in verifier._verified and tokens[1] not in verifier._verified


def test_a_long_token_is_verified_every_time_and_not_kept():
    verifier = TokenVerifier(SECRET)
    token = encode({"client_id": "c1", "padding": "x" * MAX_CACHED_TOKEN_LENGTH})
    assert verifier.client_id(token) == "c1"
    assert len(verifier) == 0


def test_the_requests_of_one_lesson_share_its_id_and_their_role() -> None:
    """A join's lesson id and role are held for the connection's life (its record, entries and
    room): two requests decoded apart hold one object of each, not a copy each."""
    first, second = (
        parse_join_request((json.loads(f'{{"user_id": "u{k}", "lesson_id": "lesson-42", '
                                       '"role": "student"}'),), ROLES)
        for k in range(2)
    )
    assert first.lesson_id is second.lesson_id
    assert first.role is second.role


def test_what_a_connection_keeps_of_its_joins_has_no_instance_dict() -> None:
    """A connection holds its last join and its entries for its whole life: slotted."""
    kept = (
        TeacherEntry("l", "u"), ParticipantEntry("l", "c"), RosterEntry("l", "u"),
        ClaimEntry("l", "u", "c"), TeacherJoin("l", 1, "s", "u"),
        ParticipantJoin("l", 1, "s", "c", "student", "u"), SeatsOnly("l", 1, "s"),
    )
    assert [type(k).__name__ for k in kept if hasattr(k, "__dict__")] == []
