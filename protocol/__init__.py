"""rollcall's Socket.IO v5 layer: a pure packet codec, a server on python-engineio/Tornado, and
its client managers (rooms and emits in one process, or relayed between processes over Redis).

This package imports nothing of the application; the names below are its pinned public API."""

from .packet import (
    DEFAULT_MAX_ATTACHMENTS,
    RESERVED_EVENTS,
    Decoder,
    Packet,
    PacketType,
    ProtocolError,
    encode,
)
from .socketio_server import ConnectionRefusedError, Server, get_tornado_handler

__all__ = [
    "DEFAULT_MAX_ATTACHMENTS",
    "RESERVED_EVENTS",
    "ConnectionRefusedError",
    "Decoder",
    "Packet",
    "PacketType",
    "ProtocolError",
    "Server",
    "encode",
    "get_tornado_handler",
]
