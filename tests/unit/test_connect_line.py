"""The connect line names the transport the client's handshake asked for, whatever else its
query carries (a polling client's cache-busting timestamp, its token), and "-" for none."""

from __future__ import annotations

import asyncio
import logging

import pytest

from handlers.connections import Connections, log


@pytest.mark.parametrize(
    ("query", "transport"),
    [
        ("EIO=4&transport=websocket", "websocket"),
        ("EIO=4&transport=polling&t=PqXk1a2", "polling"),
        ("EIO=4&t=PqXk1a3&transport=polling&token=x%26y", "polling"),
        ("EIO=4", "-"),
        ("", "-"),
    ],
)
def test_the_connect_line_names_the_handshakes_transport(
    query: str, transport: str, caplog: pytest.LogCaptureFixture
) -> None:
    connections = Connections(None)  # type: ignore[arg-type]  # connect does no I/O
    with caplog.at_level(logging.INFO, logger=log.name):
        for sid in ("a", "b"):  # the second from the remembered parse
            accepted = asyncio.run(connections.connect(sid, {"QUERY_STRING": query}, None))
            assert accepted is True
    lines = [r for r in caplog.records if r.name == log.name and r.getMessage() == "connect"]
    assert [(r.sid, r.transport) for r in lines] == [("a", transport), ("b", transport)]
