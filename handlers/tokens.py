"""Verification of participants' access tokens: HS256 JWTs signed by the platform's auth service.

No I/O: the shared secret is all that is needed. A token is never decoded without verifying it,
so with no secret configured every token is refused.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import jwt
from jwt.algorithms import HMACAlgorithm

from handlers.errors import InvalidToken
from handlers.validation import is_valid_text

log = logging.getLogger("rollcall.tokens")

ALGORITHM = "HS256"
# The client id is the `client_id` claim, else `sub` (join_lesson.md, "Access tokens").
CLIENT_ID_CLAIMS = ("client_id", "sub")
MIN_SECRET_BYTES = 32  # RFC 7518 section 3.2, for HS256


class _PreparedHMAC(HMACAlgorithm):
    """HS256 that checks its key once: PyJWT re-checks the secret on every decode (that it is
    not a PEM, SSH or DER key), which cost ~18 µs of a ~63 µs verification here."""

    def __init__(self) -> None:
        super().__init__(HMACAlgorithm.SHA256)
        self._prepared: tuple[Any, bytes] | None = None

    def prepare_key(self, key: Any) -> bytes:
        prepared = self._prepared
        if prepared is None or prepared[0] != key:
            prepared = self._prepared = (key, super().prepare_key(key))
        return prepared[1]


class TokenVerifier:
    """Turns an access token into the client id it carries, or raises InvalidToken."""

    def __init__(self, secret: str | None) -> None:
        self._secret = secret
        self._jwt = jwt.PyJWT()
        # PyJWT keeps its algorithms on its PyJWS; replacing HS256 there is the only hook it has.
        self._jwt._jws.unregister_algorithm(ALGORITHM)
        self._jwt._jws.register_algorithm(ALGORITHM, _PreparedHMAC())
        if secret is not None and len(secret.encode()) < MIN_SECRET_BYTES:
            # Said once here rather than by PyJWT on every join.
            log.warning("the access token secret is shorter than %d bytes", MIN_SECRET_BYTES)
            warnings.filterwarnings("ignore", category=jwt.warnings.InsecureKeyLengthWarning)

    def client_id(self, token: str) -> str:
        """The verified token's client id; InvalidToken if it does not verify, has expired, or
        names no client."""
        if self._secret is None:
            raise InvalidToken("access tokens cannot be verified by this server")
        if not is_valid_text(token):
            raise InvalidToken("the access token does not verify")
        try:
            claims = self._jwt.decode(token, self._secret, algorithms=[ALGORITHM])
        except jwt.ExpiredSignatureError:
            raise InvalidToken("the access token has expired") from None
        except jwt.InvalidTokenError:
            raise InvalidToken("the access token does not verify") from None
        for claim in CLIENT_ID_CLAIMS:
            value = claims.get(claim)
            if isinstance(value, str) and is_valid_text(value):
                return value
        raise InvalidToken("the access token carries no client id")
