"""The admin token's edges: where `?token=` is taken (the HTML page only), the page's cookie
behind a TLS-terminating proxy, a cookie outliving a change of the admin token, and
Authorization headers that name the scheme but carry no token. The app is served as server.py
serves it (make_http_server: the trusted proxies decide the scheme)."""

from __future__ import annotations

import dataclasses

import pytest

from config import Config
from tests.integration.operations.conftest import ADMIN_TOKEN, BEARER, admin_get
from tests.integration.resilience.conftest import (  # noqa: F401 - a fixture, reused as it is
    http_server,
)
from tests.support import ServerProcess, free_port
from web.auth import COOKIE_NAME

VIEW = "/lessons/L/view"
#: the views that are not a page a browser opens: the token goes in a header, never the query
NOT_PAGES = ("/lessons/L", "/lessons/L/attendance.csv")
HTTPS = {"X-Forwarded-Proto": "https"}


def cookie_attributes(set_cookie: str) -> set[str]:
    return {part.strip().partition("=")[0].lower() for part in set_cookie.split(";")[1:]}


@pytest.mark.parametrize("path", NOT_PAGES)
@pytest.mark.gen_test(timeout=10)
async def test_the_query_token_opens_only_the_page(url: str, path: str) -> None:
    response = await admin_get(url, f"{path}?token={ADMIN_TOKEN}", headers=None)

    assert response.code == 401
    assert "Set-Cookie" not in response.headers
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="rollcall"'
    assert (await admin_get(url, path)).code == 200  # the header opens it


@pytest.mark.gen_test(timeout=10)
async def test_behind_a_trusted_tls_proxy_the_cookie_is_secure(url: str) -> None:
    behind_tls = await admin_get(url, f"{VIEW}?token={ADMIN_TOKEN}", headers=HTTPS)
    plain = await admin_get(url, f"{VIEW}?token={ADMIN_TOKEN}", headers=None)

    assert behind_tls.code == plain.code == 303
    assert "secure" in cookie_attributes(behind_tls.headers["Set-Cookie"])
    assert "secure" not in cookie_attributes(plain.headers["Set-Cookie"])
    assert {"httponly", "samesite", "path"} <= cookie_attributes(behind_tls.headers["Set-Cookie"])


class TestFromAnUntrustedPeer:
    @pytest.fixture
    def config(self, config: Config) -> Config:
        return dataclasses.replace(config, trusted_proxies=())

    @pytest.mark.gen_test(timeout=10)
    async def test_its_forwarded_proto_is_not_believed(self, url: str) -> None:
        response = await admin_get(url, f"{VIEW}?token={ADMIN_TOKEN}", headers=HTTPS)

        assert response.code == 303
        assert "secure" not in cookie_attributes(response.headers["Set-Cookie"])


PROTECTED = (VIEW, *NOT_PAGES)


@pytest.mark.parametrize("path", PROTECTED)
@pytest.mark.parametrize(
    "authorization",
    ["", "Bearer", "Bearer ", "Bearer   ", "bearer", "bearer ", "BEARER", "Bearer\t"],
)
@pytest.mark.gen_test(timeout=10)
async def test_a_bearer_scheme_without_a_token_is_refused(
    url: str, path: str, authorization: str
) -> None:
    response = await admin_get(url, path, headers={"Authorization": authorization})

    assert response.code == 401
    assert "Set-Cookie" not in response.headers


@pytest.mark.gen_test(timeout=10)
async def test_the_scheme_is_case_insensitive_with_the_token(url: str) -> None:
    """RFC 7235 section 2.1: `bearer <token>` is the same credential as `Bearer <token>`."""
    for scheme in ("bearer", "BEARER"):
        headers = {"Authorization": f"{scheme} {ADMIN_TOKEN}"}
        assert (await admin_get(url, "/lessons/L", headers=headers)).code == 200
    assert (await admin_get(url, "/lessons/L", headers=BEARER)).code == 200


async def served_with(
    admin_token: str, redis_url: str, database_url: str
) -> tuple[str, ServerProcess]:
    port = free_port()
    server = await ServerProcess.start(
        "--port", str(port), "--redis-url", redis_url, "--database-url", database_url,
        "--admin-token", admin_token,
    )  # fmt: skip
    return f"http://127.0.0.1:{port}", server


@pytest.mark.gen_test(timeout=60)
async def test_a_cookie_minted_under_an_earlier_admin_token_is_refused(
    redis_url: str, database_url: str, redis_db, database
) -> None:
    """server.py restarted with another --admin-token (a rotation): the old page cookie opens
    nothing any more, a cookie minted under the new token does."""
    new_token = ADMIN_TOKEN + "-rotated"
    url, before = await served_with(ADMIN_TOKEN, redis_url, database_url)
    try:
        minted = await admin_get(url, f"{VIEW}?token={ADMIN_TOKEN}", headers=None)
        old_cookie = {"Cookie": minted.headers["Set-Cookie"].split(";", 1)[0]}
        assert (await admin_get(url, "/lessons/L", headers=old_cookie)).code == 200
    finally:
        await before.stop()

    url, after = await served_with(new_token, redis_url, database_url)
    try:
        for path in PROTECTED:
            refused = await admin_get(url, path, headers=old_cookie)
            assert refused.code == 401, path
            assert "Set-Cookie" not in refused.headers
        fresh = await admin_get(url, f"{VIEW}?token={new_token}", headers=None)
        new_cookie = {"Cookie": fresh.headers["Set-Cookie"].split(";", 1)[0]}
        assert new_cookie != old_cookie and new_cookie["Cookie"].startswith(COOKIE_NAME + "=")
        assert (await admin_get(url, "/lessons/L", headers=new_cookie)).code == 200
    finally:
        await after.stop()
