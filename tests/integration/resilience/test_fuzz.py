"""Generated frames thrown at one live server over both transports; after each example a new
client must still get a normal join. The server is shared by all examples of a test on purpose:
what one example leaves behind is what the next one meets."""

from __future__ import annotations

import contextlib
import json

import tornado.websocket
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.peers import Peer, assert_serves_a_join, connect, open_peer

EXAMPLES = 100
EXAMPLE_TIMEOUT = 10.0

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12,
)
join_like = st.fixed_dictionaries(
    {}, optional={k: json_values | st.text(max_size=200)
                  for k in ("user_id", "lesson_id", "access_token", "role")})
payloads = st.one_of(
    json_values.map(json.dumps),
    st.tuples(st.sampled_from(["join_lesson", "error", "connect", "x"]),
              st.lists(join_like | json_values, max_size=3))
    .map(lambda t: json.dumps([t[0], *t[1]])),
    st.text(max_size=40),
)
# A Socket.IO packet: type, attachments, namespace, ack id, payload; each part often valid.
socketio_packets = st.builds(
    lambda *parts: "".join(parts),
    st.sampled_from("0123456789x"),
    st.sampled_from(["", "", "1-", "2-", "10-", "11-", "-", "99999999999999999999-"]),
    st.sampled_from(["", "", "/", "/admin,", "/,", ","]),
    st.sampled_from(["", "", "0", "7", "9007199254740992", "1" * 30]),
    payloads,
)
engineio_frames = st.one_of(
    socketio_packets.map(lambda packet: "4" + packet),
    st.sampled_from(["1", "2", "2probe", "3", "3probe", "5", "6", "0", "4", ""]),
    st.text(max_size=30),
)
frames = st.lists(st.one_of(engineio_frames, st.binary(max_size=64)), min_size=1, max_size=8)

FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    # the server fixture is shared by the examples on purpose (see above)
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


async def throw(url: str, transport: str, connected: bool, batch: list[str | bytes]) -> None:
    """Send `batch` on a new connection, tolerating whatever the server does about it."""
    peer: Peer = await open_peer(url, transport)
    try:
        if connected:
            await connect(peer)
        if transport == "websocket":
            with contextlib.suppress(tornado.websocket.WebSocketClosedError):
                await peer.send(*batch)
        else:
            await peer.post(*batch)
    finally:
        peer.close()
    await assert_serves_a_join(url, transport)


@FUZZ_SETTINGS
@given(batch=frames, connected=st.booleans())
def test_fuzz_websocket(io_loop, url, lesson, batch, connected) -> None:
    io_loop.run_sync(lambda: throw(url, "websocket", connected, batch), timeout=EXAMPLE_TIMEOUT)


@FUZZ_SETTINGS
@given(batch=frames, connected=st.booleans())
def test_fuzz_polling(io_loop, url, lesson, batch, connected) -> None:
    io_loop.run_sync(lambda: throw(url, "polling", connected, batch), timeout=EXAMPLE_TIMEOUT)

