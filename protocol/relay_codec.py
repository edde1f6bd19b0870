"""The relay's wire format, python-socketio's ``AsyncRedisManager`` JSON messages: pure, no I/O.

Processes on one channel (rollcall's, python-socketio servers, and write-only
``socketio.AsyncRedisManager`` emitters in other services) exchange these (python-socketio 5.15.1
and later; the key order is python-socketio's):

    {"method": "emit", "event", "data": [args], "binary", "namespace", "room", "skip_sid",
     "callback": null | [sid, namespace, id], "host_id"}
    {"method": "disconnect", "sid", "namespace", "host_id"}
    {"method": "enter_room" | "leave_room", "sid", "room", "namespace", "host_id"}
    {"method": "close_room", "room", "namespace", "host_id"}
    {"method": "callback", "host_id" (of the asker), "sid", "namespace", "id", "args"}

An emit whose arguments hold bytes is sent as ``"binary": true`` with ``data`` =
``[args with placeholders, base64 attachment, ...]``, the placeholders of :mod:`protocol.packet`.
Only JSON is ever decoded (python-socketio's old pickle format is refused, never unpickled);
whatever is not one of these messages raises :class:`RelayError`.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from .packet import (
    ROOT_NAMESPACE,
    HasBinary,
    ProtocolError,
    check_placeholders,
    deconstruct,
    reconstruct,
    refuse_binary,
)

__all__ = [
    "Callback",
    "CloseRoom",
    "Disconnect",
    "Emit",
    "Message",
    "RelayError",
    "RoomChange",
    "decode",
    "emit_data",
    "encode",
]

ENTER_ROOM = "enter_room"
LEAVE_ROOM = "leave_room"
_COMPACT = (",", ":")


class RelayError(ValueError):
    """A message on the channel that is not a valid python-socketio manager message."""


@dataclass(frozen=True, slots=True)
class Emit:
    """An emit to a room, a sid, or (``room`` None) a whole namespace.

    ``data`` is python-socketio's list: the arguments, or ``[None]`` for an emit without data (see
    :func:`emit_data`). ``callback`` is ``(sid, namespace, ack id)`` when the emitting process
    wants the one recipient's ack back.
    """

    event: str
    data: list[Any]
    namespace: str = ROOT_NAMESPACE
    room: str | None = None
    skip_sid: str | list[str] | None = None
    callback: tuple[str, str, int] | None = None
    host_id: str | None = None

    @property
    def args(self) -> list[Any]:
        """The arguments the clients receive."""
        data = self.data
        return [] if len(data) == 1 and data[0] is None else data


@dataclass(frozen=True, slots=True)
class Disconnect:
    sid: str
    namespace: str = ROOT_NAMESPACE
    host_id: str | None = None


@dataclass(frozen=True, slots=True)
class RoomChange:
    """``enter_room`` or ``leave_room`` (``method``) for one sid."""

    method: str
    sid: str
    room: str
    namespace: str = ROOT_NAMESPACE
    host_id: str | None = None


@dataclass(frozen=True, slots=True)
class CloseRoom:
    room: str
    namespace: str = ROOT_NAMESPACE
    host_id: str | None = None


@dataclass(frozen=True, slots=True)
class Callback:
    """An ack, sent back to the process (``host_id``) that asked for it."""

    host_id: str | None
    sid: str
    namespace: str
    id: int
    args: list[Any]


Message = Emit | Disconnect | RoomChange | CloseRoom | Callback


def emit_data(data: Any) -> list[Any]:
    """python-socketio's ``data`` list for ``emit(event, data)``: a tuple is several arguments,
    anything else (None included) one."""
    return list(data) if isinstance(data, tuple) else [data]


# -- encoding ---------------------------------------------------------------------------------


def _dumps(fields: dict[str, Any]) -> str:
    return json.dumps(fields, separators=_COMPACT)


def encode(message: Message) -> str:
    """The JSON text of ``message``. Raises TypeError for arguments that are not JSON, and for
    bytes among a callback's arguments (the format has no binary acks)."""
    if isinstance(message, Emit):
        return _encode_emit(message)
    if isinstance(message, Disconnect):
        fields: dict[str, Any] = {"method": "disconnect", "sid": message.sid}
    elif isinstance(message, RoomChange):
        fields = {"method": message.method, "sid": message.sid, "room": message.room}
    elif isinstance(message, CloseRoom):
        fields = {"method": "close_room", "room": message.room}
    else:
        return _dumps(
            {
                "method": "callback",
                "host_id": message.host_id,
                "sid": message.sid,
                "namespace": message.namespace,
                "id": message.id,
                "args": message.args,
            }
        )
    fields["namespace"] = message.namespace
    fields["host_id"] = message.host_id
    return _dumps(fields)


def _encode_emit(message: Emit) -> str:
    fields: dict[str, Any] = {
        "method": "emit",
        "event": message.event,
        "data": message.data,
        "binary": False,
        "namespace": message.namespace,
        "room": message.room,
        "skip_sid": message.skip_sid,
        "callback": None if message.callback is None else list(message.callback),
        "host_id": message.host_id,
    }
    try:
        return json.dumps(fields, separators=_COMPACT, default=refuse_binary)
    except HasBinary:
        attachments: list[bytes] = []
        data = deconstruct(message.data, attachments)
        fields["data"] = [data, *(base64.b64encode(a).decode() for a in attachments)]
        fields["binary"] = True
        return _dumps(fields)


# -- decoding ---------------------------------------------------------------------------------


def decode(raw: bytes | str) -> Message | None:
    """The message in ``raw``; None for a method this format does not define (python-socketio
    ignores those too). Anything malformed raises :class:`RelayError`."""
    try:
        fields = json.loads(raw)
    except (ValueError, RecursionError):
        raise RelayError("not JSON (python-socketio's pickle format is never decoded)") from None
    if not isinstance(fields, dict) or not isinstance(fields.get("method"), str):
        raise RelayError("not an object with a method")
    method = fields["method"]
    namespace = _optional_str(fields, "namespace")
    if namespace is None:
        namespace = ROOT_NAMESPACE
    host_id = _optional_str(fields, "host_id")
    if method == "emit":
        return _decode_emit(fields, namespace, host_id)
    if method == "disconnect":
        return Disconnect(_str(fields, "sid"), namespace, host_id)
    if method in (ENTER_ROOM, LEAVE_ROOM):
        return RoomChange(method, _str(fields, "sid"), _str(fields, "room"), namespace, host_id)
    if method == "close_room":
        return CloseRoom(_str(fields, "room"), namespace, host_id)
    if method == "callback":
        args = fields.get("args")
        if not isinstance(args, list):
            raise RelayError("callback args is not a list")
        return Callback(host_id, _str(fields, "sid"), namespace, _ack_id(fields.get("id")), args)
    return None


def _optional_str(fields: dict[str, Any], key: str) -> str | None:
    value = fields.get(key)
    if not isinstance(value, str | None):
        raise RelayError(f"{key} is not a string")
    return value


def _str(fields: dict[str, Any], key: str) -> str:
    value = fields.get(key)
    if not isinstance(value, str):
        raise RelayError(f"{key} is not a string")
    return value


def _ack_id(value: Any) -> int:
    if type(value) is not int:
        raise RelayError(f"ack id {value!r} is not an integer")
    return value


def _decode_emit(fields: dict[str, Any], namespace: str, host_id: str | None) -> Emit:
    event = fields.get("event")
    if not isinstance(event, str):
        raise RelayError("emit without an event name")
    skip_sid = fields.get("skip_sid")
    if not (
        isinstance(skip_sid, str | None)
        or (isinstance(skip_sid, list) and all(isinstance(s, str) for s in skip_sid))
    ):
        raise RelayError("skip_sid is neither a sid nor a list of sids")
    callback = fields.get("callback")
    if callback is not None:
        if not (
            isinstance(callback, list)
            and len(callback) == 3
            and isinstance(callback[0], str)
            and isinstance(callback[1], str)
        ):
            raise RelayError("callback is not [sid, namespace, id]")
        callback = (callback[0], callback[1], _ack_id(callback[2]))
    data = _decode_data(fields.get("data"), bool(fields.get("binary")))
    return Emit(
        event, data, namespace, _optional_str(fields, "room"), skip_sid, callback, host_id
    )


def _decode_data(data: Any, binary: bool) -> list[Any]:
    """An emit's ``data`` list, binary attachments restored into their placeholders."""
    if not isinstance(data, list):
        raise RelayError("emit data is not a list")
    if not binary:
        return data
    if not data or not all(isinstance(a, str) for a in data[1:]):
        raise RelayError("binary emit without its base64 attachments")
    try:
        attachments = [base64.b64decode(a, validate=True) for a in data[1:]]
    except binascii.Error as exc:
        raise RelayError(f"bad base64 attachment: {exc}") from None
    try:
        check_placeholders(data[0], len(attachments))
        data = reconstruct(data[0], attachments)
    except ProtocolError as exc:
        raise RelayError(f"binary emit: {exc}") from None
    except RecursionError:
        raise RelayError("binary emit nested too deep") from None
    if not isinstance(data, list):
        raise RelayError("binary emit data is not a list")
    return data
