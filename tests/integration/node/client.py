"""Python side of driver.mjs: one official socket.io-client, driven over JSON lines."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
from pathlib import Path
from typing import Any

DRIVER = Path(__file__).with_name("driver.mjs")
EXPECT_WITHIN = 5.0

# socket.io-client options per transport mode; "upgrade" is the client's default
# (polling first, then a WebSocket upgrade).
MODES: dict[str, dict[str, Any]] = {
    "polling": {"transports": ["polling"]},
    "websocket": {"transports": ["websocket"]},
    "upgrade": {},
}


def _encode(value: Any) -> Any:
    """JSON hook: bytes travel as {"$bin": base64}, which the driver turns into a Buffer."""
    if isinstance(value, bytes | bytearray | memoryview):
        return {"$bin": base64.b64encode(value).decode()}
    raise TypeError(f"cannot send {type(value).__name__} to the node driver")


def _decode(obj: dict[str, Any]) -> Any:
    """JSON hook: the driver's {"$bin": base64} back to bytes, so tests compare bytes."""
    if obj.keys() == {"$bin"}:
        return base64.b64decode(obj["$bin"])
    return obj


class NodeClient:
    """A socket.io-client in a node subprocess; events are awaited, never slept for."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self._proc = proc
        self._pending: list[dict[str, Any]] = []
        self._refs = itertools.count()
        self.log: list[dict[str, Any]] = []
        """Every event line received so far, in order (for negative assertions)."""

    @classmethod
    async def start(cls) -> NodeClient:
        """Spawn the driver; stderr is inherited so pytest shows it on failure."""
        proc = await asyncio.create_subprocess_exec(
            "node",
            str(DRIVER),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        return cls(proc)

    async def send(self, op: str, **fields: Any) -> None:
        """Write one command line to the driver."""
        assert self._proc.stdin is not None
        line = json.dumps({"op": op, **fields}, default=_encode)
        self._proc.stdin.write(line.encode() + b"\n")
        await self._proc.stdin.drain()

    async def expect(
        self, *types: str, within: float = EXPECT_WITHIN, **match: Any
    ) -> dict[str, Any]:
        """Return (and consume) the first event of one of `types` whose fields equal `match`.

        Events that do not match are kept for later calls, so the order in which a test
        awaits events need not be the order in which they arrive.
        """

        def matches(event: dict[str, Any]) -> bool:
            return event["type"] in types and all(event.get(k) == v for k, v in match.items())

        async def wait() -> dict[str, Any]:
            for event in self._pending:
                if matches(event):
                    self._pending.remove(event)
                    return event
            assert self._proc.stdout is not None
            while True:
                line = await self._proc.stdout.readline()
                if not line:
                    raise RuntimeError(f"node driver exited ({self._proc.returncode})")
                event = json.loads(line, object_hook=_decode)
                self.log.append(event)
                if matches(event):
                    return event
                self._pending.append(event)

        try:
            return await asyncio.wait_for(wait(), within)
        except TimeoutError:
            raise AssertionError(
                f"no {'/'.join(types)} event matching {match} within {within}s;"
                f" unmatched: {self._pending}"
            ) from None

    async def connect(
        self, url: str, ns: str = "/", auth: Any = None, **opts: Any
    ) -> dict[str, Any]:
        """Connect `ns`; returns the connect event or raises with the connect_error."""
        fields: dict[str, Any] = {"url": url, "ns": ns, "opts": opts}
        if auth is not None:
            fields["auth"] = auth
        await self.send("connect", **fields)
        event = await self.expect("connect", "connect_error", ns=ns)
        if event["type"] == "connect_error":
            raise AssertionError(f"connect to {ns} refused: {event}")
        return event

    async def emit(self, event: str, *args: Any, ns: str = "/") -> None:
        """Emit without an ack."""
        await self.send("emit", ns=ns, event=event, args=list(args))

    async def call(self, event: str, *args: Any, ns: str = "/") -> list[Any]:
        """Emit with an ack callback and return the arguments the server acked with."""
        ref = f"r{next(self._refs)}"
        await self.send("emit", ns=ns, event=event, args=list(args), ref=ref)
        return (await self.expect("ack", ref=ref))["args"]

    async def close(self) -> None:
        """Kill the driver (teardown must never leave node processes behind)."""
        if self._proc.returncode is None:
            self._proc.kill()
        await self._proc.wait()
