"""--max-connections: past it a handshake is refused with HTTP 503 (a WebSocket before its 101),
counted in /metrics, while the connections held go on; a place frees when a session ends."""

from __future__ import annotations

import dataclasses
import logging

import pytest
import socketio
import tornado.httpclient

import metrics
from config import Config, parse_config
from protocol.admission import Admission
from tests.support.peers import SUCCESS, connect, join, open_peer, session_closed, teacher, until

CAPACITY = 3
REPORT_SECONDS = 0.05
REFUSED = "rollcall_refused_connections_total"


def refused() -> float:
    return metrics.REGISTRY.get_sample_value(REFUSED) or 0.0


def test_the_flag_parses_and_refuses_bad_values(capsys) -> None:
    assert Config().max_connections is None  # the open-file limit less a headroom
    assert parse_config(["--max-connections", "5000"], environ={}).max_connections == 5000
    assert parse_config([], environ={"ROLLCALL_MAX_CONNECTIONS": "0"}).max_connections == 0
    assert parse_config([], environ={"ROLLCALL_MAX_CONNECTIONS": ""}).max_connections is None
    for argv in (["--max-connections", "-1"], ["--max-connections", "many"]):
        with pytest.raises(SystemExit) as info:
            parse_config(argv, environ={})
        assert info.value.code == 2
        assert "--max-connections" in capsys.readouterr().err


@pytest.mark.gen_test(timeout=10)
async def test_refusals_are_logged_once_per_interval_with_their_count(caplog) -> None:
    admission = Admission(1, report_interval=REPORT_SECONDS)
    admission.opened()
    with caplog.at_level(logging.WARNING, logger="protocol.admission"):
        for _ in range(5):
            assert not admission.admit()
        assert len(caplog.records) == 1  # the first at once, the next four at the interval's end
        await until(lambda: len(caplog.records) == 2)
        for _ in range(3):
            assert not admission.admit()
        await until(lambda: len(caplog.records) == 3)  # the interval after: at its end too
    assert [r.getMessage().split(":")[0] for r in caplog.records] == [
        "refused 1 handshakes with HTTP 503", "refused 4 handshakes with HTTP 503",
        "refused 3 handshakes with HTTP 503"]
    assert admission.refused == 8
    admission.closed()
    assert admission.admit()


class TestMaxConnections:
    @pytest.fixture
    def config(self, config: Config) -> Config:
        return dataclasses.replace(config, max_connections=CAPACITY)

    @pytest.mark.gen_test(timeout=20)
    async def test_past_it_raw_handshakes_get_503_and_the_held_go_on(
        self, url, lesson, sio, caplog
    ) -> None:
        caplog.set_level(logging.INFO)
        held = [await open_peer(url, t) for t in ("websocket", "polling", "websocket")]
        before = refused()
        for transport in ("polling", "websocket"):
            with pytest.raises(tornado.httpclient.HTTPClientError) as info:
                await open_peer(url, transport)
            assert info.value.code == 503
            assert info.value.response.headers["Connection"] == "close"
        assert refused() == before + 2
        assert sio.eio.admission.taken == CAPACITY
        # one WARNING for the storm; a 503 (and a 101) per device is not an access-log line
        warnings = [r for r in caplog.records if r.name == "protocol.admission"]
        assert [r.levelno for r in warnings] == [logging.WARNING]
        access = [r.getMessage().split()[0] for r in caplog.records if r.name == "tornado.access"]
        assert access == ["200"]  # the polling handshake
        await connect(held[0])
        assert await join(held[0], teacher()) == SUCCESS
        # a session that ends gives its place to the next handshake
        await held[1].send("1")
        await until(lambda: session_closed(sio.eio, held[1]))
        again = await open_peer(url, "websocket")
        for each in (*held, again):
            each.close()
        await until(lambda: sio.eio.admission.taken == 0)

    @pytest.mark.parametrize("transports", [["polling"], ["websocket"]])
    @pytest.mark.gen_test(timeout=20)
    async def test_python_socketio_clients_past_it_are_refused(
        self, url, lesson, sio, transports
    ) -> None:
        base = url.removesuffix("/socket.io/")
        held = [await open_peer(url, "websocket") for _ in range(CAPACITY)]
        client = socketio.AsyncClient(reconnection=False)
        before = refused()
        with pytest.raises(socketio.exceptions.ConnectionError):
            await client.connect(base, transports=transports, wait_timeout=5)
        assert refused() == before + 1
        held[0].close()
        await until(lambda: sio.eio.admission.taken == CAPACITY - 1)
        await client.connect(base, transports=transports, wait_timeout=5)
        assert client.connected
        await client.disconnect()
        for each in held:
            each.close()


class TestUnlimited:
    @pytest.fixture
    def config(self, config: Config) -> Config:
        return dataclasses.replace(config, max_connections=0)

    @pytest.mark.gen_test(timeout=20)
    async def test_zero_refuses_nobody(self, url, lesson, sio) -> None:
        peers = [await open_peer(url, "polling") for _ in range(CAPACITY + 2)]
        assert sio.eio.admission.taken == CAPACITY + 2
        for each in peers:
            each.close()
