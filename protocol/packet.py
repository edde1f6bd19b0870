"""Socket.IO v5 packet codec: pure, no I/O.

Text frames and binary attachments go in, whole :class:`Packet` objects come out, and back.
Validation follows the reference parser (``socket.io-parser``); every rejection raises
:class:`ProtocolError` so callers have exactly one thing to catch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

__all__ = [
    "DEFAULT_MAX_ATTACHMENTS",
    "RESERVED_EVENTS",
    "Decoder",
    "HasBinary",
    "Packet",
    "PacketType",
    "ProtocolError",
    "check_placeholders",
    "deconstruct",
    "encode",
    "reconstruct",
    "refuse_binary",
]

DEFAULT_MAX_ATTACHMENTS = 10
#: The largest ack id: JavaScript clients count them in a Number, exact up to 2**53 - 1, and a
#: longer one would only make the server echo an arbitrarily long number back.
MAX_ACK_ID = 2**53 - 1
ROOT_NAMESPACE = "/"
#: Event names the JavaScript side gives a meaning of its own; a peer may never send them.
RESERVED_EVENTS = frozenset(
    {"connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener"}
)
PLACEHOLDER_KEY = "_placeholder"
PLACEHOLDER_NUM = "num"
#: Digits in the longest valid ack id.
MAX_ACK_ID_DIGITS = len(str(MAX_ACK_ID))
_BINARY_TYPES = (bytes, bytearray, memoryview)
_DIGITS = "0123456789"


class ProtocolError(ValueError):
    """A packet that is not valid Socket.IO v5 (or that cannot be encoded as such)."""


class PacketType(IntEnum):
    CONNECT = 0
    DISCONNECT = 1
    EVENT = 2
    ACK = 3
    CONNECT_ERROR = 4
    BINARY_EVENT = 5
    BINARY_ACK = 6


@dataclass(slots=True)
class Packet:
    """One Socket.IO packet.

    Binary data lives inside ``data`` as ``bytes``: the codec, not the caller, turns it into
    placeholders and attachments. A decoded binary packet therefore comes back as EVENT or ACK,
    exactly like the reference parser does.
    """

    type: PacketType
    namespace: str = ROOT_NAMESPACE
    data: Any = None
    id: int | None = None


class HasBinary(Exception):
    """Raised from inside json.dumps to leave the fast path when data holds bytes."""


def refuse_binary(value: Any) -> Any:
    """A ``default`` hook for json: bytes raise :class:`HasBinary` (the caller then sends them as
    placeholders and attachments), anything else that is not JSON a TypeError. Non-binary data is
    thus never walked in Python."""
    if isinstance(value, _BINARY_TYPES):
        raise HasBinary
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


_fast_dumps = json.JSONEncoder(
    separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=refuse_binary
).encode


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_json_decode = json.JSONDecoder(parse_constant=_reject_constant).decode


def _loads(text: str) -> Any:
    """JSON.parse semantics: no NaN/Infinity; errors (incl. deep nesting) become ProtocolError."""
    try:
        return _json_decode(text)
    except (ValueError, RecursionError) as exc:
        raise ProtocolError(f"invalid JSON payload: {exc}") from None


def _is_valid_event(data: Any) -> bool:
    return (
        type(data) is list
        and len(data) > 0
        and isinstance(data[0], str)
        and data[0] not in RESERVED_EVENTS
    )


def _check_data(ptype: PacketType, data: Any) -> None:
    """Payload rules of the reference parser, slightly stricter: an EVENT name must be a string
    and EVENT/ACK/CONNECT_ERROR must carry a payload."""
    if ptype is PacketType.CONNECT:
        ok = data is None or type(data) is dict
    elif ptype is PacketType.DISCONNECT:
        ok = data is None
    elif ptype is PacketType.CONNECT_ERROR:
        ok = isinstance(data, str) or type(data) is dict
    elif ptype in (PacketType.EVENT, PacketType.BINARY_EVENT):
        ok = _is_valid_event(data)
    else:
        ok = type(data) is list
    if not ok:
        raise ProtocolError(f"invalid payload for {ptype.name}")


def _check_header(packet: Packet, ptype: PacketType) -> None:
    nsp = packet.namespace
    if not isinstance(nsp, str) or not nsp.startswith("/") or "," in nsp:
        raise ProtocolError(f"invalid namespace {nsp!r}")
    pid = packet.id
    if pid is not None and (type(pid) is not int or not 0 <= pid <= MAX_ACK_ID):
        raise ProtocolError(f"invalid ack id {pid!r}")
    _check_ack_id(ptype, pid)


def _prefix(ptype: int, attachments: int, namespace: str, pid: int | None) -> str:
    head = str(ptype)
    if attachments:
        head += f"{attachments}-"
    if namespace != ROOT_NAMESPACE:
        head += namespace + ","
    if pid is not None:
        head += str(pid)
    return head


def deconstruct(data: Any, buffers: list[bytes]) -> Any:
    """``data`` with every bytes value replaced by ``{"_placeholder": true, "num": n}`` and
    appended to ``buffers``, as socket.io-parser (and python-socketio's relay format) do."""
    if isinstance(data, _BINARY_TYPES):
        buffers.append(bytes(data))
        return {PLACEHOLDER_KEY: True, PLACEHOLDER_NUM: len(buffers) - 1}
    if isinstance(data, list | tuple):
        return [deconstruct(item, buffers) for item in data]
    if isinstance(data, dict):
        return {key: deconstruct(value, buffers) for key, value in data.items()}
    return data


_CARRY_ACK_ID = frozenset(
    {PacketType.EVENT, PacketType.ACK, PacketType.BINARY_EVENT, PacketType.BINARY_ACK}
)
_NEED_ACK_ID = frozenset({PacketType.ACK, PacketType.BINARY_ACK})


def _check_ack_id(ptype: PacketType, pid: int | None) -> None:
    """Only events and acks carry an ack id, and acks always do."""
    if pid is not None and ptype not in _CARRY_ACK_ID:
        raise ProtocolError(f"{ptype.name} cannot carry an ack id")
    if pid is None and ptype in _NEED_ACK_ID:
        raise ProtocolError(f"{ptype.name} needs an ack id")


def encode(packet: Packet) -> list[str | bytes]:
    """Encode a packet into Engine.IO messages: one text frame, then any binary attachments.

    EVENT/ACK data containing bytes is sent as BINARY_EVENT/BINARY_ACK automatically.
    """
    ptype = packet.type
    if type(ptype) is not PacketType:
        try:
            ptype = PacketType(ptype)
        except ValueError:
            raise ProtocolError(f"unknown packet type {packet.type!r}") from None
    _check_header(packet, ptype)
    _check_data(ptype, packet.data)
    if packet.data is None:
        return [_prefix(ptype, 0, packet.namespace, packet.id)]
    try:
        body = _fast_dumps(packet.data)
    except HasBinary:
        pass
    except (TypeError, ValueError, RecursionError) as exc:
        raise ProtocolError(f"cannot encode payload: {exc}") from None
    else:
        if ptype is PacketType.BINARY_EVENT:
            ptype = PacketType.EVENT
        elif ptype is PacketType.BINARY_ACK:
            ptype = PacketType.ACK
        return [_prefix(ptype, 0, packet.namespace, packet.id) + body]
    if ptype in (PacketType.EVENT, PacketType.BINARY_EVENT):
        ptype = PacketType.BINARY_EVENT
    elif ptype in (PacketType.ACK, PacketType.BINARY_ACK):
        ptype = PacketType.BINARY_ACK
    else:
        raise ProtocolError(f"{ptype.name} cannot carry binary data")
    buffers: list[bytes] = []
    try:
        body = _fast_dumps(deconstruct(packet.data, buffers))
    except (TypeError, ValueError, RecursionError, HasBinary) as exc:
        raise ProtocolError(f"cannot encode payload: {exc!r}") from None
    frames: list[str | bytes] = [_prefix(ptype, len(buffers), packet.namespace, packet.id) + body]
    frames.extend(buffers)
    return frames


def check_placeholders(data: Any, attachments: int) -> None:
    """Every placeholder must name an attachment that will arrive (checked up front, so a bad
    packet is refused before its attachments are buffered)."""
    if type(data) is list:
        for item in data:
            check_placeholders(item, attachments)
    elif type(data) is dict:
        if data.get(PLACEHOLDER_KEY) is True:
            num = data.get(PLACEHOLDER_NUM)
            if type(num) is not int or not 0 <= num < attachments:
                raise ProtocolError(f"illegal attachment placeholder {num!r}")
            return
        for value in data.values():
            check_placeholders(value, attachments)


def reconstruct(data: Any, buffers: list[bytes]) -> Any:
    """The inverse of :func:`deconstruct`, for data :func:`check_placeholders` has accepted."""
    if type(data) is list:
        return [reconstruct(item, buffers) for item in data]
    if type(data) is dict:
        if data.get(PLACEHOLDER_KEY) is True:
            return buffers[data[PLACEHOLDER_NUM]]
        return {key: reconstruct(value, buffers) for key, value in data.items()}
    return data


def _read_digits(text: str, start: int, most: int) -> int:
    """Where the run of ASCII digits at `start` ends, reading at most ``most + 1`` characters:
    a run longer than `most` is refused by the caller without the rest being looked at."""
    window = text[start : start + most + 1]
    return start + len(window) - len(window.lstrip(_DIGITS))


class Decoder:
    """Incremental decoder for one connection.

    Feed it every Engine.IO message in order; it returns a :class:`Packet` once one is complete
    (a binary packet completes with its last attachment) and ``None`` while attachments are
    pending. At most one packet is ever pending, with at most ``max_attachments`` buffers of at
    most ``max_attachment_bytes`` in all (None: no byte limit), so a peer that declares
    attachments and never sends them holds a bounded amount of memory.
    """

    __slots__ = (
        "_buffered",
        "_buffers",
        "_expected",
        "_pending",
        "max_attachment_bytes",
        "max_attachments",
    )

    def __init__(
        self,
        max_attachments: int = DEFAULT_MAX_ATTACHMENTS,
        max_attachment_bytes: int | None = None,
    ) -> None:
        self.max_attachments = max_attachments
        self.max_attachment_bytes = max_attachment_bytes
        self._pending: Packet | None = None
        self._expected = 0
        #: the awaited packet's attachments so far; a list only while some are (an idle
        #: connection's decoder holds none)
        self._buffers: list[bytes] | tuple[()] = ()
        self._buffered = 0

    @property
    def pending_namespace(self) -> str | None:
        """The namespace of the binary packet whose attachments are awaited, if any: a server
        can refuse it from its header, before buffering anything."""
        return None if self._pending is None else self._pending.namespace

    def reset(self) -> None:
        """Drop a partially received binary packet."""
        self._pending = None
        self._expected = 0
        self._buffers = ()
        self._buffered = 0

    def feed(self, message: str | bytes) -> Packet | None:
        try:
            if isinstance(message, str):
                if self._pending is not None:
                    raise ProtocolError("got a text frame while waiting for attachments")
                return self._decode_text(message)
            if isinstance(message, bytes | bytearray):
                return self._take_attachment(bytes(message))
            raise ProtocolError(f"cannot decode a {type(message).__name__}")
        except ProtocolError:
            self.reset()
            raise
        except RecursionError:
            # JSON nested just under json's own limit still overflows the placeholder walks
            self.reset()
            raise ProtocolError("payload nested too deeply") from None

    def _take_attachment(self, data: bytes) -> Packet | None:
        pending = self._pending
        if pending is None:
            raise ProtocolError("got binary data outside a binary packet")
        self._buffered += len(data)
        if self.max_attachment_bytes is not None and self._buffered > self.max_attachment_bytes:
            raise ProtocolError("attachments too large")
        buffers = self._buffers or []
        buffers.append(data)
        self._buffers = buffers
        if len(buffers) < self._expected:
            return None
        pending.data = reconstruct(pending.data, buffers)
        self.reset()
        return pending

    def _decode_text(self, text: str) -> Packet | None:
        if not text or text[0] not in "0123456":
            raise ProtocolError(f"unknown packet type in {text[:16]!r}")
        ptype = PacketType(ord(text[0]) - 48)
        pos = 1
        attachments = 0
        if ptype is PacketType.BINARY_EVENT or ptype is PacketType.BINARY_ACK:
            most = len(str(self.max_attachments))
            end = _read_digits(text, pos, most)
            if end - pos > most:
                raise ProtocolError("too many attachments")
            if end == pos or end >= len(text) or text[end] != "-":
                raise ProtocolError("illegal attachments")
            attachments = int(text[pos:end])
            if attachments < 1:
                raise ProtocolError("illegal attachments")
            if attachments > self.max_attachments:
                raise ProtocolError("too many attachments")
            pos = end + 1
        namespace = ROOT_NAMESPACE
        if text.startswith("/", pos):
            comma = text.find(",", pos)
            if comma == -1:
                namespace, pos = text[pos:], len(text)
            else:
                namespace, pos = text[pos:comma], comma + 1
        pid = None
        end = _read_digits(text, pos, MAX_ACK_ID_DIGITS)
        if end > pos:
            if end - pos > MAX_ACK_ID_DIGITS:
                raise ProtocolError("ack id too long")
            pid = int(text[pos:end])
            if pid > MAX_ACK_ID:
                raise ProtocolError("ack id too large")
            pos = end
        data = _loads(text[pos:]) if pos < len(text) else None
        _check_ack_id(ptype, pid)
        _check_data(ptype, data)
        if not attachments:
            return Packet(ptype, namespace, data, pid)
        check_placeholders(data, attachments)
        base = PacketType.EVENT if ptype is PacketType.BINARY_EVENT else PacketType.ACK
        self._pending = Packet(base, namespace, data, pid)
        self._expected = attachments
        return None
