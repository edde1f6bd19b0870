"""Verification of access tokens: HS256 JWTs signed by the platform's auth service.

No I/O: the shared secret is all that is needed. A token is never decoded without verifying it,
so with no secret configured every token is refused. A participant's token names the client whose
`{client_id}` key the join writes; a teacher's token (join_lesson.md, "Who may join as the teacher
(revision 2)") proves that the caller is the teacher whose `{user_id}` key the join writes. Either
id is a bare key name, so one that would name another key is refused (store/keys.py).

A participant's token also says which users its holder is: the roll call counts a join as the
attendance of its `user_id` only when the token vouches for that id (docs/redis-keys.md, "Whose
attendance a join is"), through its user id claim (`--user-id-claim`), its `sub` or its client id.

A client re-joins with the token it joined with (every reconnect, every lesson switch), so the
identities of recently verified tokens are kept (a bounded LRU keyed by the token's exact text):
verifying one again costs a dictionary lookup and a check of its `exp` instead of ~25 µs of
PyJWT. Only tokens that verified are kept, so a refused token is refused every time; and what was
checked once (the signature, `nbf`, `iat`, the client id) stays true, except `exp`, which is
checked again on every use.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt

from handlers.errors import InvalidToken
from handlers.validation import ROLE_TEACHER, is_valid_text
from store.keys import is_reserved

log = logging.getLogger(__name__)

ALGORITHM = "HS256"
SUBJECT_CLAIM = "sub"
# The client id is the `client_id` claim, else `sub` (join_lesson.md, "Access tokens").
CLIENT_ID_CLAIMS = ("client_id", SUBJECT_CLAIM)
ROLE_CLAIM = "role"
#: the claim naming the platform's user (--user-id-claim's default)
USER_ID_CLAIM = "user_id"
MIN_SECRET_BYTES = 32  # RFC 7518 section 3.2, for HS256
EXPIRY_CLAIM = "exp"
#: claims that say when, by whom, for whom or as what a token is issued, never which user holds it
NOT_USER_ID_CLAIMS = (EXPIRY_CLAIM, "nbf", "iat", "iss", "aud", "jti", ROLE_CLAIM)
#: verified tokens whose identity is kept (~0.7 kB each for a typical token, < 2 kB at most)
CACHE_SIZE = 4096
#: longer tokens are verified on every use, so that the cache's memory stays bounded
MAX_CACHED_TOKEN_LENGTH = 1024


@dataclass(frozen=True, slots=True)
class Identity:
    """What a verified token says about its holder."""

    client_id: str
    #: the `role` claim, None when absent or not a string
    role: str | None
    #: the user ids the token vouches for: its client id, `sub` and user id claim (a tuple: a
    #: third of a frozenset's memory in the cache, and as quick to search for three)
    user_ids: tuple[str, ...] = ()

    def vouches_for(self, user_id: str) -> bool:
        """Whether the token binds `user_id`: a join's attendance is that user's only then."""
        return user_id in self.user_ids


class TokenVerifier:
    """Turns an access token into the identity it carries, or raises InvalidToken."""

    def __init__(
        self,
        secret: str | None,
        clock: Callable[[], float] = time.time,
        user_id_claim: str = USER_ID_CLAIM,
    ) -> None:
        self._secret = secret
        self._clock = clock
        self._user_id_claim = user_id_claim
        #: token -> (its identity, its `exp` as PyJWT reads it, None without one); LRU order
        self._verified: OrderedDict[str, tuple[Identity, int | None]] = OrderedDict()
        #: PyJWT warns of a short secret on every decode; it is said once, here, instead
        self._short_secret = secret is not None and len(secret.encode()) < MIN_SECRET_BYTES
        if self._short_secret:
            log.warning("the access token secret is shorter than %d bytes", MIN_SECRET_BYTES)

    def __len__(self) -> int:
        """The number of verified tokens kept (the cache's memory)."""
        return len(self._verified)

    def client_id(self, token: str) -> str:
        """The verified token's client id; InvalidToken as `verify` says."""
        return self.verify(token).client_id

    def check_teacher(self, token: str | None, user_id: str) -> None:
        """Raise InvalidToken unless `token` is the teacher token of `user_id`: it verifies, its
        `role` claim is "teacher" and its client id is `user_id`."""
        if token is None:
            raise InvalidToken("a teacher's join needs the teacher's access token")
        identity = self.verify(token)
        if identity.role != ROLE_TEACHER:
            raise InvalidToken("the access token is not a teacher's")
        if identity.client_id != user_id:
            raise InvalidToken("the access token is not this teacher's")

    def verify(self, token: str) -> Identity:
        """The verified token's identity; InvalidToken if it does not verify, has expired, names
        no client, or names one whose key would be another key (store/keys.py)."""
        if self._secret is None:
            raise InvalidToken("access tokens cannot be verified by this server")
        cached = self._verified.get(token)
        if cached is not None:
            identity, expiry = cached
            if expiry is not None and expiry <= self._clock():
                del self._verified[token]
                raise InvalidToken("the access token has expired")
            self._verified.move_to_end(token)
            return identity
        if not is_valid_text(token):
            raise InvalidToken("the access token does not verify")
        try:
            claims = self._decode(token, self._secret)
        except jwt.ExpiredSignatureError:
            raise InvalidToken("the access token has expired") from None
        except jwt.InvalidTokenError:
            raise InvalidToken("the access token does not verify") from None
        identity = _identity(claims, self._user_id_claim)
        if len(token) <= MAX_CACHED_TOKEN_LENGTH:
            # PyJWT has checked that `exp`, when present, reads as an integer; it compares that.
            expiry = int(claims[EXPIRY_CLAIM]) if EXPIRY_CLAIM in claims else None
            self._verified[token] = (identity, expiry)
            if len(self._verified) > CACHE_SIZE:
                self._verified.popitem(last=False)
        return identity

    def _decode(self, token: str, secret: str) -> dict[str, Any]:
        """PyJWT's verification, its short-secret warning silenced (said once at construction)."""
        if not self._short_secret:
            return jwt.decode(token, secret, algorithms=[ALGORITHM])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", jwt.InsecureKeyLengthWarning)
            return jwt.decode(token, secret, algorithms=[ALGORITHM])


def _identity(claims: dict[str, Any], user_id_claim: str) -> Identity:
    """The identity verified claims carry; InvalidToken if they name no client, or one whose key
    would be another key."""
    for claim in CLIENT_ID_CLAIMS:
        value = claims.get(claim)
        if isinstance(value, str) and is_valid_text(value):
            if is_reserved(value):
                raise InvalidToken("the access token's client id is reserved")
            role = claims.get(ROLE_CLAIM)
            user_ids = [value]
            for bound in (claims.get(SUBJECT_CLAIM), claims.get(user_id_claim)):
                user_id = _user_id(bound)
                if user_id is not None and user_id not in user_ids:
                    user_ids.append(user_id)
            return Identity(value, role if isinstance(role, str) else None, tuple(user_ids))
    raise InvalidToken("the access token carries no client id")


def _user_id(value: object) -> str | None:
    """A claim's value as the user id it names: a string as it is, an integer (platforms with
    numeric ids) in decimal; anything else names no user."""
    if isinstance(value, str):
        return value if is_valid_text(value) else None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None
