"""The admin token that guards the lesson views.

Without --admin-token the views do not exist (404), so a server is never exposed by default.
With one, a request must carry it as `Authorization: Bearer <token>`, or carry the cookie that
the HTML page sets after being opened once with `?token=`. The cookie holds an HMAC of the token,
not the token, so a leaked cookie does not open anything the bearer token opens elsewhere.
Every comparison is constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
from types import TracebackType

import tornado.httputil
import tornado.web
from tornado.log import app_log, gen_log

from web.access import request_summary

COOKIE_NAME = "rollcall_admin"
COOKIE_PATH = "/lessons"
COOKIE_MAX_AGE_DAYS = 1
TOKEN_QUERY_ARGUMENT = "token"
BEARER = "bearer"
_COOKIE_CONTEXT = b"rollcall admin view cookie v1"
HTTP_UNAUTHORIZED = 401
HTTP_NOT_FOUND = 404


class Unauthorized(tornado.web.HTTPError):
    """No admin token, or a wrong one: 401 with a Bearer challenge."""

    def __init__(self) -> None:
        super().__init__(HTTP_UNAUTHORIZED, reason="Unauthorized")


class ViewsDisabled(tornado.web.HTTPError):
    """No admin token is configured: the views answer as if they did not exist."""

    def __init__(self) -> None:
        super().__init__(HTTP_NOT_FOUND)


def cookie_value(admin_token: str) -> str:
    """What the page's cookie holds for `admin_token`."""
    return hmac.new(admin_token.encode(), _COOKIE_CONTEXT, hashlib.sha256).hexdigest()


def _equal(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


class AdminHandler(tornado.web.RequestHandler):
    """Base of the admin-only handlers: checks the token before any method runs."""

    #: the query may hold the admin token: logs name the request by its path alone
    log_query = False

    def initialize(self, admin_token: str | None) -> None:
        self.admin_token = admin_token

    def prepare(self) -> None:
        if self.admin_token is None:
            raise ViewsDisabled()
        if not self.authorized():
            raise Unauthorized()

    def authorized(self) -> bool:
        """Whether the request carries the admin token (header) or its cookie."""
        assert self.admin_token is not None
        scheme, _, token = self.request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == BEARER and token:
            return _equal(token.strip(), self.admin_token)
        cookie = self.get_cookie(COOKIE_NAME)
        return cookie is not None and _equal(cookie, cookie_value(self.admin_token))

    def write_error(self, status_code: int, **kwargs: object) -> None:
        if status_code == HTTP_UNAUTHORIZED:
            self.set_header("WWW-Authenticate", 'Bearer realm="rollcall"')
        self.set_header("Cache-Control", "no-store")
        error = kwargs.get("exc_info", (None, None, None))[1]  # type: ignore[index]
        reason = getattr(error, "reason", None) or tornado.httputil.responses.get(
            status_code, "Unknown"
        )
        self.finish({"status": "error", "code": status_code, "message": reason})

    def log_exception(
        self,
        typ: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Tornado's, but naming the request without its query (see web/access.py)."""
        if isinstance(value, tornado.web.HTTPError):
            if value.log_message:
                gen_log.warning("%d %s: %s", value.status_code, request_summary(self),
                                value.log_message % value.args)
        else:
            app_log.error("Uncaught exception %s", request_summary(self),
                          exc_info=(typ, value, tb))  # type: ignore[arg-type]


class AdminPageHandler(AdminHandler):
    """An admin page a browser opens: `?token=` is accepted once, swapped for an HttpOnly cookie
    and removed from the address bar by a redirect, so it stays out of history and referrers."""

    def prepare(self) -> None:
        token = self.get_query_argument(TOKEN_QUERY_ARGUMENT, None)
        if token is None or self.admin_token is None:
            super().prepare()
            return
        if not _equal(token, self.admin_token):
            raise Unauthorized()
        self.set_cookie(
            COOKIE_NAME,
            cookie_value(self.admin_token),
            path=COOKIE_PATH,
            expires_days=COOKIE_MAX_AGE_DAYS,
            httponly=True,
            samesite="Strict",
            secure=self.request.protocol == "https",
        )
        self.redirect(self.request.path, status=303)
