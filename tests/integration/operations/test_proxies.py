"""--trusted-proxies: the forwarding headers name the client only when the TCP peer is trusted."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterator

import pytest
import tornado.httputil
import tornado.netutil
import tornado.web
from tornado.httpclient import AsyncHTTPClient

from config import LOOPBACK
from web.proxies import ProxiedHTTPServer, TrustedProxies

FORGED = "203.0.113.9"
ELSEWHERE = (ipaddress.ip_network("10.0.0.0/8"),)


@pytest.mark.parametrize(
    ("address", "trusted"),
    [
        ("127.0.0.1", True),
        ("127.9.9.9", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),  # a dual-stack socket's view of an IPv4 peer
        ("10.0.0.1", False),
        ("::2", False),
        ("", False),  # a Unix socket's peer
        ("not an address", False),
    ],
)
def test_loopback_is_trusted_and_nothing_else(address: str, trusted: bool) -> None:
    assert (address in TrustedProxies(LOOPBACK)) is trusted


def test_nothing_is_trusted_without_proxies() -> None:
    assert "127.0.0.1" not in TrustedProxies(())


class WhoAmI(tornado.web.RequestHandler):
    def get(self) -> None:
        self.finish({"ip": self.request.remote_ip, "protocol": self.request.protocol})


@pytest.fixture
def serve(io_loop) -> Iterator:
    """Start a ProxiedHTTPServer trusting the given networks; returns its URL."""
    servers: list[ProxiedHTTPServer] = []

    def start(trusted) -> str:
        server = ProxiedHTTPServer(tornado.web.Application([(r"/", WhoAmI)]),
                                   trusted_proxies=trusted)
        [sock] = tornado.netutil.bind_sockets(0, "127.0.0.1")
        server.add_sockets([sock])
        servers.append(server)
        return f"http://127.0.0.1:{sock.getsockname()[1]}/"

    yield start
    for server in servers:
        server.stop()


async def who(url: str, **headers: str) -> dict:
    response = await AsyncHTTPClient().fetch(url, headers=headers)
    return json.loads(response.body)


@pytest.mark.gen_test
async def test_a_trusted_proxy_names_the_client(serve) -> None:
    url = serve(LOOPBACK)
    assert await who(url, **{"X-Real-IP": FORGED}) == {"ip": FORGED, "protocol": "http"}
    assert (await who(url, **{"X-Forwarded-For": f"198.51.100.1, {FORGED}"}))["ip"] == FORGED
    assert (await who(url, **{"X-Forwarded-Proto": "https"}))["protocol"] == "https"
    assert (await who(url))["ip"] == "127.0.0.1"


@pytest.mark.gen_test
@pytest.mark.parametrize("trusted", [(), ELSEWHERE])
async def test_any_other_peer_is_the_client_whatever_it_says(serve, trusted) -> None:
    url = serve(trusted)
    forged = {"X-Real-IP": FORGED, "X-Forwarded-For": FORGED, "X-Forwarded-Proto": "https"}
    assert await who(url, **forged) == {"ip": "127.0.0.1", "protocol": "http"}


@pytest.mark.gen_test
async def test_forwarding_headers_sent_twice_are_read_as_one(serve) -> None:
    """Two X-Forwarded-For lines are one list of hops, in order, as RFC 9110 reads repeated
    fields; the scheme is the last one said."""
    url = serve(LOOPBACK)
    headers = tornado.httputil.HTTPHeaders()
    headers.add("X-Forwarded-For", FORGED)
    headers.add("X-Forwarded-For", "198.51.100.1, 127.0.0.1")
    headers.add("X-Forwarded-Proto", "http")
    headers.add("X-Forwarded-Proto", "https")
    response = await AsyncHTTPClient().fetch(url, headers=headers)
    assert json.loads(response.body) == {"ip": "198.51.100.1", "protocol": "https"}


@pytest.mark.gen_test
async def test_an_x_real_ip_that_is_no_address_gives_way_to_x_forwarded_for(serve) -> None:
    url = serve(LOOPBACK)
    assert (await who(url, **{"X-Real-IP": "unknown", "X-Forwarded-For": FORGED}))["ip"] == FORGED
    assert (await who(url, **{"X-Real-IP": "unknown"}))["ip"] == "127.0.0.1"
    assert (await who(url, **{"X-Forwarded-For": "not, addresses"}))["ip"] == "127.0.0.1"


def test_a_remembered_peer_is_matched_as_the_first_time() -> None:
    proxies = TrustedProxies(LOOPBACK)
    for _ in range(2):
        assert proxies.trusts_peer("127.0.0.1")
        assert not proxies.trusts_peer("10.0.0.1")
        assert not proxies.trusts_peer("")


def test_forwarded_hops_are_not_remembered() -> None:
    """A hop's text is the header's, of any length: remembering it would let a client fill
    the server's memory through a trusted proxy."""
    proxies = TrustedProxies(LOOPBACK)
    proxies.trusts_peer("127.0.0.1")
    for hop in ("10.0.0.1", "x" * 10_000):
        assert hop not in proxies
    assert proxies.trusts_peer.cache_info().currsize == 1
