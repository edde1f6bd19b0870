"""The test server the node client talks to: handlers that record what they saw."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from protocol import ConnectionRefusedError, Server


@dataclass
class ServerState:
    """What the server's handlers saw, for tests to assert on."""

    auth: dict[str, Any] = field(default_factory=dict)
    received: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    disconnects: asyncio.Queue[tuple[str, Any]] = field(default_factory=asyncio.Queue)


def build_server(state: ServerState) -> Server:
    """A server with short heartbeats, so pings run during every test."""
    sio = Server(ping_interval=0.3, ping_timeout=0.2, namespaces=["/", "/admin"])

    @sio.on("connect")
    async def connect(sid: str, environ: dict[str, Any], auth: Any) -> None:
        if isinstance(auth, dict) and auth.get("refuse"):
            raise ConnectionRefusedError("nope", {"code": 1})
        state.auth[sid] = auth

    @sio.on("connect", namespace="/admin")
    async def connect_admin(sid: str, environ: dict[str, Any], auth: Any) -> None:
        state.auth[sid] = auth

    @sio.on("disconnect")
    async def disconnect(sid: str, reason: Any) -> None:
        await state.disconnects.put((sid, reason))

    @sio.on("echo")
    async def echo(sid: str, *args: Any) -> tuple[Any, ...]:
        state.received[sid] = args
        return args

    @sio.on("tell")
    async def tell(sid: str, *args: Any) -> None:
        await sio.emit("told", args, to=sid)

    @sio.on("whoami", namespace="/admin")
    async def whoami(sid: str) -> dict[str, str]:
        return {"ns": "/admin", "sid": sid}

    return sio
