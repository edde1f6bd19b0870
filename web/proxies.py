"""Which peer may name the client: X-Real-IP / X-Forwarded-For are believed from trusted proxies
only (--trusted-proxies), so that nobody else can forge the address that the per-address
connection limit counts and the logs show."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

import tornado.httpserver
import tornado.httputil

from web.accept import AcceptBackoff

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class TrustedProxies:
    """A set of addresses and networks, matched against a peer's address."""

    def __init__(self, networks: Iterable[Network]) -> None:
        self.networks = tuple(networks)

    def __contains__(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:  # a Unix socket's peer has no address
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in network for network in self.networks)


class ProxiedHTTPServer(AcceptBackoff, tornado.httpserver.HTTPServer):
    """Tornado's HTTP server, taking the client address (and scheme) from the forwarding
    headers only on connections whose peer is a trusted proxy (and pausing its accepts when out
    of file descriptors: web/accept.py).

    Tornado reads its ``xheaders`` setting once per request, when the request starts; it is set
    there for that connection's peer.
    """

    def initialize(  # type: ignore[override]
        self, request_callback: Any, trusted_proxies: Iterable[Network] = (), **kwargs: Any
    ) -> None:
        kwargs.pop("xheaders", None)
        super().initialize(request_callback, **kwargs)
        self.trusted_proxies = TrustedProxies(trusted_proxies)

    def start_request(
        self, server_conn: object, request_conn: tornado.httputil.HTTPConnection
    ) -> tornado.httputil.HTTPMessageDelegate:
        self.xheaders = _peer(request_conn) in self.trusted_proxies
        return super().start_request(server_conn, request_conn)


def _peer(request_conn: tornado.httputil.HTTPConnection) -> str:
    """The address of the connection's TCP peer ("" for a Unix socket)."""
    context = getattr(request_conn, "context", None)  # what Tornado's HTTP/1 connection keeps
    address = getattr(context, "address", None)
    return address[0] if isinstance(address, tuple) else ""
