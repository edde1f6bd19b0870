"""The pure codec: exact strings from the protocol spec, and hypothesis properties."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import Decoder, Packet, PacketType, ProtocolError, encode
from protocol.packet import MAX_ACK_ID, MAX_ACK_ID_DIGITS

P = PacketType


@pytest.mark.parametrize(
    ("packet", "frames"),
    [
        (Packet(P.CONNECT), ["0"]),
        (Packet(P.CONNECT, "/admin", {"token": "123"}), ['0/admin,{"token":"123"}']),
        (Packet(P.CONNECT, data={"sid": "abc"}), ['0{"sid":"abc"}']),
        (Packet(P.DISCONNECT, "/admin"), ["1/admin,"]),
        (Packet(P.EVENT, data=["hello", 1]), ['2["hello",1]']),
        (
            Packet(P.EVENT, "/admin", ["project:delete", 123], 456),
            ['2/admin,456["project:delete",123]'],
        ),
        (Packet(P.ACK, "/admin", [], 456), ["3/admin,456[]"]),
        (
            Packet(P.CONNECT_ERROR, data={"message": "Not authorized"}),
            ['4{"message":"Not authorized"}'],
        ),
        (Packet(P.EVENT, data=["é", {"a": [True, None]}]), ['2["é",{"a":[true,null]}]']),
        (
            Packet(P.EVENT, data=["hello", b"\x01\x02\x03"]),
            ['51-["hello",{"_placeholder":true,"num":0}]', b"\x01\x02\x03"],
        ),
        (
            Packet(P.ACK, "/admin", ["a", {"x": b"\x03"}, bytearray(b"\x04")], 456),
            [
                '62-/admin,456["a",{"x":{"_placeholder":true,"num":0}},{"_placeholder":true,"num":1}]',
                b"\x03",
                b"\x04",
            ],
        ),
        (Packet(P.BINARY_EVENT, data=["no-binary"]), ['2["no-binary"]']),
    ],
)
def test_encode_exact(packet: Packet, frames: list) -> None:
    assert encode(packet) == frames


def test_tuple_args_encode_as_array() -> None:
    assert encode(Packet(P.EVENT, data=["ev", (1, 2)])) == ['2["ev",[1,2]]']


@pytest.mark.parametrize(
    "packet",
    [
        Packet(P.EVENT, data=[]),
        Packet(P.EVENT, data=["connect"]),
        Packet(P.EVENT, data=[1]),
        Packet(P.EVENT, data="hello"),
        Packet(P.ACK, data=[]),  # no id
        Packet(P.CONNECT, data=["x"]),
        Packet(P.CONNECT, data={"a": b"\x00"}),  # binary outside EVENT/ACK
        Packet(P.DISCONNECT, data={}),
        Packet(P.CONNECT_ERROR, data=None),
        Packet(P.EVENT, "admin", ["x"]),
        Packet(P.EVENT, "/a,b", ["x"]),
        Packet(P.EVENT, data=["x"], id=-1),
        Packet(P.EVENT, data=["x"], id=True),
        Packet(P.CONNECT, id=1),
        Packet(P.EVENT, data=["x", {1, 2}]),
        Packet(P.EVENT, data=["x", float("nan")]),
        Packet(9, data=["x"]),  # type: ignore[arg-type]
    ],
)
def test_encode_rejects(packet: Packet) -> None:
    with pytest.raises(ProtocolError):
        encode(packet)


@pytest.mark.parametrize(
    ("frame", "packet"),
    [
        ("0", Packet(P.CONNECT)),
        ("0/custom", Packet(P.CONNECT, "/custom")),
        ("0/custom,", Packet(P.CONNECT, "/custom")),
        ('0/custom,{"token":"abc"}', Packet(P.CONNECT, "/custom", {"token": "abc"})),
        ("1", Packet(P.DISCONNECT)),
        ("1/custom,", Packet(P.DISCONNECT, "/custom")),
        (
            '2["message",1,"2",{"3":[true]}]',
            Packet(P.EVENT, data=["message", 1, "2", {"3": [True]}]),
        ),
        ('2456["m"]', Packet(P.EVENT, data=["m"], id=456)),
        ('2/a,7["m"]', Packet(P.EVENT, "/a", ["m"], 7)),
        ("3456[1]", Packet(P.ACK, data=[1], id=456)),
        ('4"oops"', Packet(P.CONNECT_ERROR, data="oops")),
        ('4/a,{"message":"x"}', Packet(P.CONNECT_ERROR, "/a", {"message": "x"})),
    ],
)
def test_decode_exact(frame: str, packet: Packet) -> None:
    assert Decoder().feed(frame) == packet


def test_decode_binary_event_waits_for_all_attachments() -> None:
    decoder = Decoder()
    header = '52-789["m",{"_placeholder":true,"num":1},{"x":{"_placeholder":true,"num":0}}]'
    assert decoder.feed(header) is None
    assert decoder.pending_namespace == "/"
    assert decoder.feed(b"\x01") is None
    assert decoder.feed(bytearray(b"\x02")) == Packet(
        P.EVENT, "/", ["m", b"\x02", {"x": b"\x01"}], 789
    )
    assert decoder.pending_namespace is None
    assert decoder.feed('2["next"]') == Packet(P.EVENT, data=["next"])


def test_decode_binary_ack() -> None:
    decoder = Decoder()
    assert decoder.feed('61-/a,3[{"_placeholder":true,"num":0}]') is None
    assert decoder.feed(b"z") == Packet(P.ACK, "/a", [b"z"], 3)


@pytest.mark.parametrize(
    "frame",
    [
        "",
        "abc",
        "7",
        "9[]",
        "2{}",
        '2abc["a"]',
        "2[]",
        "2[1]",
        '2["connect"]',
        '2["connect_error"]',
        '2["disconnect"]',
        '2["disconnecting"]',
        '2["newListener"]',
        '2["removeListener"]',
        "2",
        '2["a"',
        "2[NaN]",
        '2["a",Infinity]',
        "3[1]",
        "3",
        "1{}",
        '0["x"]',
        '05["x"]',
        "0/a,1",
        '4/a,5"x"',
        "4",
        "4[]",
        '5-["a"]',
        '50-["a"]',
        '5x-["a"]',
        '51["a"]',
        '511-["a"]',
        "5" + "9" * 5000 + '-["a"]',
        '51-["a",{"_placeholder":true,"num":1}]',
        '51-["a",{"_placeholder":true,"num":-1}]',
        '51-["a",{"_placeholder":true,"num":"0"}]',
        '51-["a",{"_placeholder":true,"num":true}]',
        '51-["a",{"_placeholder":true,"num":0.0}]',
        '51-["a",{"_placeholder":true}]',
        '51-["a",{"_placeholder":true,"num":"splice"}]',
        "2" + "9" * 5000 + '["a"]',
        "2" + "[" * 100000 + "]" * 100000,
    ],
)
def test_decode_rejects(frame: str) -> None:
    with pytest.raises(ProtocolError):
        Decoder().feed(frame)


def test_a_decoder_holds_no_attachment_list_while_it_awaits_none() -> None:
    """Every connection has a decoder for its whole life: while no binary packet is pending it
    holds no list for attachments (~70 bytes per idle connection), before and after one."""
    decoder = Decoder()
    assert not isinstance(decoder._buffers, list)
    assert decoder.feed('51-["m",{"_placeholder":true,"num":0}]') is None
    assert decoder.feed(b"\x01") == Packet(P.EVENT, "/", ["m", b"\x01"])
    assert not isinstance(decoder._buffers, list)


def test_attachment_limit_is_configurable() -> None:
    header = "53-[" + ",".join(['"a"'] + ['{"_placeholder":true,"num":0}'] * 3) + "]"
    with pytest.raises(ProtocolError):
        Decoder(max_attachments=2).feed(header)
    assert Decoder(max_attachments=3).feed(header) is None


class ReadTracingFrame(str):
    """A text frame that remembers how far into it the decoder read."""

    furthest = 0

    def __getitem__(self, key: int | slice) -> str:
        end = (key.stop or len(self)) if isinstance(key, slice) else key + 1
        type(self).furthest = max(type(self).furthest, min(end, len(self)))
        return str.__getitem__(self, key)


RUN = 990_000  # digits: what a frame of about 1 kB carries when compressed


@pytest.mark.parametrize(
    ("head", "tail", "error", "longest"),
    [
        ("2", '["a"]', "ack id too long", 1 + MAX_ACK_ID_DIGITS + 1),
        ("2/a,", '["a"]', "ack id too long", 4 + MAX_ACK_ID_DIGITS + 1),
        ("5", '-["a"]', "too many attachments", 1 + len(str(10)) + 1),
    ],
)
def test_digit_runs_are_refused_past_the_longest_valid_length(
    head: str, tail: str, error: str, longest: int
) -> None:
    ReadTracingFrame.furthest = 0
    frame = ReadTracingFrame(head + "7" * RUN + tail)
    with pytest.raises(ProtocolError, match=error):
        Decoder().feed(frame)
    assert ReadTracingFrame.furthest <= longest


def test_longest_ack_id_and_attachment_count_are_read_whole() -> None:
    assert Decoder().feed(f'2{MAX_ACK_ID}["a"]') == Packet(P.EVENT, data=["a"], id=MAX_ACK_ID)
    with pytest.raises(ProtocolError, match="too long"):
        Decoder().feed("2" + "1" * (MAX_ACK_ID_DIGITS + 1) + '["a"]')
    with pytest.raises(ProtocolError, match="too large"):
        Decoder().feed(f'2{MAX_ACK_ID + 1}["a"]')
    header = '510-["a",{"_placeholder":true,"num":0}]'
    assert Decoder(max_attachments=10).feed(header) is None
    with pytest.raises(ProtocolError, match="too many attachments"):
        Decoder(max_attachments=10).feed("5100-" + header[4:])


@pytest.mark.parametrize("message", [b"\x01", 42, None, {"a": 1}])
def test_decode_rejects_unexpected_frames(message: object) -> None:
    with pytest.raises(ProtocolError):
        Decoder().feed(message)  # type: ignore[arg-type]


def test_text_while_awaiting_attachments_is_an_error_and_resets() -> None:
    decoder = Decoder()
    decoder.feed('51-["a",{"_placeholder":true,"num":0}]')
    with pytest.raises(ProtocolError):
        decoder.feed('2["b"]')
    assert decoder.pending_namespace is None
    assert decoder.feed('2["b"]') == Packet(P.EVENT, data=["b"])


# -- properties -----------------------------------------------------------------------------

json_leaf = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
binary_value = st.recursive(
    json_leaf | st.binary(max_size=16),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text().filter(lambda k: k != "_placeholder"), inner, max_size=4)
    ),
    max_leaves=12,
)
namespaces = st.just("/") | st.text(min_size=0, max_size=8).filter(lambda s: "," not in s).map(
    lambda s: "/" + s
)
event_names = st.text().filter(
    lambda s: (
        s
        not in {
            "connect",
            "connect_error",
            "disconnect",
            "disconnecting",
            "newListener",
            "removeListener",
        }
    )
)
ack_ids = st.none() | st.integers(min_value=0, max_value=MAX_ACK_ID)


def _count_binary(value: object) -> int:
    if isinstance(value, bytes):
        return 1
    if isinstance(value, list):
        return sum(map(_count_binary, value))
    if isinstance(value, dict):
        return sum(map(_count_binary, value.values()))
    return 0


packets = st.one_of(
    st.builds(
        Packet,
        st.just(P.CONNECT),
        namespaces,
        st.none() | st.dictionaries(st.text(), json_value, max_size=4),
    ),
    st.builds(Packet, st.just(P.DISCONNECT), namespaces),
    st.builds(
        Packet,
        st.just(P.CONNECT_ERROR),
        namespaces,
        st.text() | st.dictionaries(st.text(), json_value, max_size=4),
    ),
    st.builds(
        Packet,
        st.just(P.EVENT),
        namespaces,
        st.tuples(event_names, st.lists(binary_value, max_size=4)).map(lambda t: [t[0], *t[1]]),
        ack_ids,
    ),
    st.builds(
        Packet,
        st.just(P.ACK),
        namespaces,
        st.lists(binary_value, max_size=4),
        st.integers(0, MAX_ACK_ID),
    ),
).filter(lambda p: _count_binary(p.data) <= 10)


def _decode_all(frames: list) -> Packet:
    decoder = Decoder()
    results = [decoder.feed(frame) for frame in frames]
    assert all(r is None for r in results[:-1])
    assert results[-1] is not None
    return results[-1]


@settings(max_examples=300, deadline=None)
@given(packets)
def test_round_trip(packet: Packet) -> None:
    frames = encode(packet)
    assert len(frames) == 1 + _count_binary(packet.data)
    assert _decode_all(frames) == packet


@settings(max_examples=500, deadline=None)
@given(st.lists(st.text() | st.binary(), min_size=1, max_size=4))
def test_arbitrary_input_only_raises_protocol_error(messages: list) -> None:
    decoder = Decoder()
    for message in messages:
        with contextlib.suppress(ProtocolError):
            decoder.feed(message)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from("0123456"), st.text())
def test_arbitrary_payload_after_valid_type_only_raises_protocol_error(
    kind: str, rest: str
) -> None:
    with contextlib.suppress(ProtocolError):
        Decoder().feed(kind + rest)
