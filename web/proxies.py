"""Which peer may name the client: X-Real-IP / X-Forwarded-For are believed from trusted proxies
only (--trusted-proxies), so that nobody else can forge the address that the per-address
connection limit counts and the logs show."""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable
from typing import Any

import tornado.httpserver
import tornado.httputil
import tornado.routing
import tornado.web

from web.accept import AcceptBackoff

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: the schemes a proxy may say the client used
SCHEMES = frozenset({"http", "https"})
#: TCP peers whose match is remembered: every request asks for its peer's, and parsing an
#: address and matching it against the networks costs ~3 µs, a remembered one ~0.1 µs
REMEMBERED_PEERS = 4096


class TrustedProxies:
    """A set of addresses and networks, matched against a peer's address."""

    def __init__(self, networks: Iterable[Network]) -> None:
        self.networks = tuple(networks)
        #: `address in self` for a TCP peer's address, remembered. Only a peer's: its text is
        #: short and comes from the socket, where a forwarded hop's is whatever a header says.
        self.trusts_peer = functools.lru_cache(maxsize=REMEMBERED_PEERS)(self.__contains__)

    def __contains__(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        if ip.is_unspecified:  # what Tornado names a Unix socket's peer, which has no address
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in network for network in self.networks)


def _is_address(text: str) -> bool:
    if not text:  # an absent header: no exception to raise and catch
        return False
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


class _ForwardedRouter(tornado.routing.Router):
    """Routes every request to the application, after naming its client: when the TCP peer is a
    trusted proxy, X-Real-IP, else the last X-Forwarded-For hop that is not a trusted proxy
    itself, is the client's address, and X-Forwarded-Proto (or X-Scheme) its scheme."""

    def __init__(self, app: tornado.web.Application, trusted: TrustedProxies) -> None:
        self.app = app
        self.trusted = trusted

    def find_handler(
        self, request: tornado.httputil.HTTPServerRequest, **kwargs: Any
    ) -> tornado.httputil.HTTPMessageDelegate | None:
        if self.trusted.trusts_peer(request.remote_ip):
            self._forwarded(request)
        return self.app.find_handler(request, **kwargs)

    def _forwarded(self, request: tornado.httputil.HTTPServerRequest) -> None:
        headers = request.headers
        client = self._client(headers)
        if client is not None:
            request.remote_ip = client
        scheme = _header(headers, "X-Scheme" if "X-Scheme" in headers else "X-Forwarded-Proto")
        scheme = scheme.split(",")[-1].strip().lower()
        if scheme in SCHEMES:
            request.protocol = scheme

    def _client(self, headers: tornado.httputil.HTTPHeaders) -> str | None:
        """The address the proxy names as the client's; None when the headers name none. X-Real-IP
        is parsed once: behind nginx, every request carries it."""
        real_ip = _header(headers, "X-Real-IP").strip()
        if _is_address(real_ip):
            return real_ip
        forwarded = _header(headers, "X-Forwarded-For")
        if not forwarded:
            return None
        hops = [hop.strip() for hop in forwarded.split(",")]
        client = next((hop for hop in reversed(hops) if hop not in self.trusted), hops[0])
        return client if _is_address(client) else None


def _header(headers: tornado.httputil.HTTPHeaders, name: str) -> str:
    """The header's value, repeated ones joined by commas as HTTPHeaders joins them; "" when
    absent. (HTTPHeaders.get raises and catches a KeyError for an absent header: ~0.5 µs, three
    times on every request from a trusted peer that forwards nothing.)"""
    return ",".join(headers.get_list(name))


class ProxiedHTTPServer(AcceptBackoff, tornado.httpserver.HTTPServer):
    """Tornado's HTTP server for one application, taking the client address (and scheme) from
    the forwarding headers only on connections whose peer is a trusted proxy (and pausing its
    accepts when out of file descriptors: web/accept.py)."""

    def initialize(  # type: ignore[override]
        self,
        request_callback: tornado.web.Application,
        trusted_proxies: Iterable[Network] = (),
        **kwargs: Any,
    ) -> None:
        kwargs.pop("xheaders", None)
        self.trusted_proxies = TrustedProxies(trusted_proxies)
        router = _ForwardedRouter(request_callback, self.trusted_proxies)
        super().initialize(router, **kwargs)
