"""The relay's pure codec: python-socketio's manager messages as exact text, every malformed
message refused with RelayError, and a round-trip property. No services."""

from __future__ import annotations

import json
import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.relay_codec import (
    Callback,
    CloseRoom,
    Disconnect,
    Emit,
    RelayError,
    RoomChange,
    decode,
    emit_data,
    encode,
)

HOST = "0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize(
    ("message", "text"),
    [
        (
            Emit("ev", ["a", 1], "/", "lesson-1", None, None, HOST),
            '{"method":"emit","event":"ev","data":["a",1],"binary":false,"namespace":"/",'
            f'"room":"lesson-1","skip_sid":null,"callback":null,"host_id":"{HOST}"}}',
        ),
        (
            Emit("ev", [None], "/ns", None, ["s1", "s2"], ("s3", "/ns", 7), HOST),
            '{"method":"emit","event":"ev","data":[null],"binary":false,"namespace":"/ns",'
            f'"room":null,"skip_sid":["s1","s2"],"callback":["s3","/ns",7],"host_id":"{HOST}"}}',
        ),
        (
            Emit("ev", ["text", b"\x00\xff", {"nested": [b"\x01"]}], "/", "r", "s1", None, HOST),
            '{"method":"emit","event":"ev","data":[["text",{"_placeholder":true,"num":0},'
            '{"nested":[{"_placeholder":true,"num":1}]}],"AP8=","AQ=="],"binary":true,'
            f'"namespace":"/","room":"r","skip_sid":"s1","callback":null,"host_id":"{HOST}"}}',
        ),
        (
            Disconnect("s1", "/", HOST),
            f'{{"method":"disconnect","sid":"s1","namespace":"/","host_id":"{HOST}"}}',
        ),
        (
            RoomChange("enter_room", "s1", "r", "/", HOST),
            f'{{"method":"enter_room","sid":"s1","room":"r","namespace":"/","host_id":"{HOST}"}}',
        ),
        (
            RoomChange("leave_room", "s1", "r", "/ns", HOST),
            '{"method":"leave_room","sid":"s1","room":"r","namespace":"/ns",'
            f'"host_id":"{HOST}"}}',
        ),
        (
            CloseRoom("r", "/", HOST),
            f'{{"method":"close_room","room":"r","namespace":"/","host_id":"{HOST}"}}',
        ),
        (
            Callback(HOST, "s1", "/", 7, ["answer", 2]),
            f'{{"method":"callback","host_id":"{HOST}","sid":"s1","namespace":"/","id":7,'
            '"args":["answer",2]}',
        ),
    ],
)
def test_exact_text_and_back(message, text: str) -> None:
    assert encode(message) == text
    assert decode(text) == message
    assert decode(text.encode()) == message


def test_emit_data_follows_python_socketio() -> None:
    """A tuple is several arguments; anything else, None included, is one."""
    assert emit_data(("a", 1)) == ["a", 1]
    assert emit_data(()) == []
    assert emit_data(None) == [None]
    assert emit_data(["a", 1]) == [["a", 1]]


def test_no_data_is_no_argument() -> None:
    assert Emit("ev", [None]).args == []
    assert Emit("ev", [None, None]).args == [None, None]
    assert Emit("ev", [{"a": 1}]).args == [{"a": 1}]


def test_defaults_of_a_sparse_message() -> None:
    """python-socketio's older writers leave namespace and host_id out."""
    assert decode('{"method":"emit","event":"ev","data":[1]}') == Emit("ev", [1])
    assert decode('{"method":"close_room","room":"r","namespace":null}') == CloseRoom("r")


def test_a_method_the_format_does_not_define_is_not_an_error() -> None:
    assert decode('{"method":"reticulate","namespace":"/"}') is None


def test_a_callback_with_bytes_cannot_be_encoded() -> None:
    with pytest.raises(TypeError):
        encode(Callback(HOST, "s1", "/", 1, [b"\x00"]))


def test_arguments_that_are_not_json_cannot_be_encoded() -> None:
    with pytest.raises(TypeError):
        encode(Emit("ev", [object()]))
    with pytest.raises(TypeError):
        encode(Emit("ev", [b"\x00", object()]))


def emit(**fields: object) -> str:
    return json.dumps({"method": "emit", "event": "ev", "data": [1], **fields})


def binary_emit(placeholder: dict) -> str:
    """A binary emit of one argument, ``placeholder``, with one attachment."""
    return emit(binary=True, data=[[placeholder], "AA=="])


MALFORMED = {
    "pickle": pickle.dumps({"method": "emit"}),
    "not json": b"not json",
    "invalid utf-8": b"\xff\xfe{}",
    "nested past json's limit": "[" * 100_000,
    "an array": b"[1, 2]",
    "no method": b'{"event": "ev"}',
    "method not a string": b'{"method": 1}',
    "namespace not a string": emit(namespace=1),
    "host_id not a string": emit(host_id=["h"]),
    "event missing": json.dumps({"method": "emit", "data": [1]}),
    "event not a string": emit(event=3),
    "data not a list": emit(data="no list"),
    "room not a string": emit(room=1),
    "skip_sid a number": emit(skip_sid=1),
    "skip_sid a list with a number": emit(skip_sid=["s1", 2]),
    "callback not a list": emit(callback="s1"),
    "callback too short": emit(callback=["s1", "/"]),
    "callback sid not a string": emit(callback=[1, "/", 1]),
    "callback id not an integer": emit(callback=["s1", "/", "1"]),
    "callback id a boolean": emit(callback=["s1", "/", True]),
    "binary without attachments": emit(binary=True, data=[]),
    "binary attachment not a string": emit(binary=True, data=[[1], 5]),
    "binary attachment not base64": emit(binary=True, data=[[1], "***"]),
    "placeholder out of range": binary_emit({"_placeholder": True, "num": 1}),
    "placeholder negative": binary_emit({"_placeholder": True, "num": -1}),
    "placeholder without num": binary_emit({"_placeholder": True}),
    "placeholder num a boolean": binary_emit({"_placeholder": True, "num": True}),
    "binary data not a list": emit(binary=True, data=[{"a": 1}, "AA=="]),
    "disconnect without sid": b'{"method": "disconnect"}',
    "enter_room without room": b'{"method": "enter_room", "sid": "s1", "room": null}',
    "leave_room without sid": b'{"method": "leave_room", "room": "r"}',
    "close_room without room": b'{"method": "close_room"}',
    "callback args not a list": json.dumps(
        {"method": "callback", "host_id": HOST, "sid": "s1", "id": 1, "args": "x"}
    ),
    "callback id missing": json.dumps(
        {"method": "callback", "host_id": HOST, "sid": "s1", "args": []}
    ),
}


@pytest.mark.parametrize("raw", list(MALFORMED.values()), ids=list(MALFORMED))
def test_malformed_messages_are_relay_errors(raw: bytes | str) -> None:
    with pytest.raises(RelayError):
        decode(raw)


# -- property -----------------------------------------------------------------------------------

json_leaf = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
argument = st.recursive(
    json_leaf | st.binary(max_size=16),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text().filter(lambda k: k != "_placeholder"), inner, max_size=4)
    ),
    max_leaves=12,
)
sids = st.text(max_size=8)
emits = st.builds(
    Emit,
    st.text(),
    st.lists(argument, max_size=4),
    st.just("/") | sids.map(lambda s: "/" + s),
    st.none() | sids,
    st.none() | sids | st.lists(sids, max_size=3),
    st.none() | st.tuples(sids, st.just("/"), st.integers(0, 2**53 - 1)),
    st.none() | st.just(HOST),
)


@settings(max_examples=300, deadline=None)
@given(emits)
def test_round_trip(message: Emit) -> None:
    assert decode(encode(message)) == message
