"""rollcall's Socket.IO v5 layer: a pure packet codec and a server on python-engineio/Tornado."""

from .packet import (
    DEFAULT_MAX_ATTACHMENTS,
    RESERVED_EVENTS,
    Decoder,
    Packet,
    PacketType,
    ProtocolError,
    encode,
)
from .server import ConnectionRefusedError, Server, get_tornado_handler

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
