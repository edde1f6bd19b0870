"""Whose attendance a participant's join is: the user ids its token vouches for (its user id
claim, `sub`, its client id), --user-id-claim, and how an unverified claim reads back."""

from __future__ import annotations

import jwt
import pytest

from config import parse_config
from handlers.tokens import TokenVerifier
from store.lessons import Enrolment
from store.roster import claim_field, parse_claims
from web.roll_call import STATUSES, unverified_claims

SECRET = "unit-test-secret-of-at-least-32-bytes-for-hs256"


def vouches(claims: dict[str, object], user_id: str, claim: str = "user_id") -> bool:
    token = jwt.encode(claims, SECRET, algorithm="HS256")
    return TokenVerifier(SECRET, user_id_claim=claim).verify(token).vouches_for(user_id)


@pytest.mark.parametrize(
    ("claims", "user_id"),
    [
        ({"client_id": "ana"}, "ana"),  # one id for both
        ({"sub": "ana"}, "ana"),  # sub is the client id too
        ({"client_id": "tablet-7", "sub": "ana"}, "ana"),
        ({"client_id": "tablet-7", "user_id": "ana"}, "ana"),
        ({"client_id": "tablet-7", "sub": "auth0|1", "user_id": "ana"}, "ana"),
        ({"client_id": "ana", "sub": "auth0|1"}, "ana"),  # the client id binds whatever sub is
        ({"client_id": "tablet-7", "user_id": 42}, "42"),  # numeric user ids, in decimal
    ],
)
def test_a_token_vouches_for_its_user_id_claim_its_sub_and_its_client_id(claims, user_id):
    assert vouches(claims, user_id)


@pytest.mark.parametrize(
    ("claims", "user_id"),
    [
        ({"client_id": "mallory"}, "ana"),  # the forged join of the issue
        ({"client_id": "mallory", "user_id": "mallory"}, "ana"),
        ({"client_id": "mallory", "sub": "mallory"}, "ana"),
        ({"client_id": "mallory", "user_id": True}, "True"),  # a boolean names nobody
        ({"client_id": "mallory", "user_id": ["ana"]}, "ana"),
        ({"client_id": "mallory", "user_id": 4.0}, "4.0"),
        ({"client_id": "mallory", "user_id": ""}, ""),
        ({"client_id": "mallory", "name": "ana"}, "ana"),  # only the configured claim counts
        ({"client_id": "Ana"}, "ana"),  # ids are compared exactly
    ],
)
def test_a_token_vouches_for_nobody_else(claims, user_id):
    assert not vouches(claims, user_id)


def test_the_user_id_claim_is_configurable_and_replaces_the_default():
    claims = {"client_id": "tablet-7", "student_number": "ana", "user_id": "ben"}
    assert vouches(claims, "ana", claim="student_number")
    assert not vouches(claims, "ben", claim="student_number")
    assert vouches(claims, "ben")


def test_a_cached_token_vouches_as_it_did():
    """The second verification comes from the cache, with the same ids."""
    verifier = TokenVerifier(SECRET)
    token = jwt.encode({"client_id": "tablet-7", "user_id": "ana"}, SECRET, algorithm="HS256")
    first = verifier.verify(token)
    assert verifier.verify(token) is first
    assert set(first.user_ids) == {"tablet-7", "ana"}


def test_the_user_id_claim_comes_from_flag_or_environment():
    assert parse_config([], environ={}).user_id_claim == "user_id"
    assert parse_config(["--user-id-claim", "sid_no"], environ={}).user_id_claim == "sid_no"
    environ = {"ROLLCALL_USER_ID_CLAIM": "https://platform.example/user"}
    assert parse_config([], environ=environ).user_id_claim == "https://platform.example/user"
    assert parse_config(["--user-id-claim", "x"], environ=environ).user_id_claim == "x"


@pytest.mark.parametrize(
    ("argv", "environ"),
    [
        (["--user-id-claim", ""], {}),
        (["--user-id-claim", "user id"], {}),
        (["--user-id-claim", "exp"], {}),
        (["--user-id-claim", "role"], {}),
        ([], {"ROLLCALL_USER_ID_CLAIM": "x" * 257}),
        ([], {"ROLLCALL_USER_ID_CLAIM": "user\x07id"}),
    ],
)
def test_a_bad_user_id_claim_exits_2_with_one_line_naming_the_flag(argv, environ, capsys):
    with pytest.raises(SystemExit) as exited:
        parse_config(argv, environ=environ)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert "--user-id-claim" in err


RECORD = '{"sid": "s1", "client_id": "mallory", "first": 1, "last": 2, "joins": 1}'


def test_claims_read_back_only_as_the_join_script_writes_them():
    """A field that is not `[user_id, client_id]`, or whose record names another client, reads
    as no claim: nobody can plant one that the roll call would show under another client."""
    fields = {
        claim_field("ben", "mallory"): RECORD,
        claim_field("ana", "mallory"): RECORD,
        claim_field("ana", "eve"): RECORD,  # the record says mallory
        '["ana"]': RECORD,
        '["ana", 7]': RECORD,
        "ana": RECORD,
        claim_field("dan", "mallory"): "not json",
    }
    assert [(c.user_id, c.client_id, c.sid) for c in parse_claims(fields)] == [
        ("ana", "mallory", "s1"), ("ben", "mallory", "s1"),
    ]


def test_a_claim_is_never_a_status_of_the_student_it_names():
    (claim,) = parse_claims({claim_field("ana", "mallory"): RECORD})
    (row,) = unverified_claims(Enrolment(4, {"ana": 1}), [claim])
    assert (row.user_id, row.seat, row.enrolled, row.status, row.verified) == (
        "ana", None, True, "unverified", False
    )
    assert row.status not in STATUSES
