"""Python side of classroom.mjs: a whole class on the official socket.io-client in one Node
process, each member joining the lesson on every connect (reconnects included), as the lesson
app does. Its events are awaited, never slept for."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

CLASSROOM = Path(__file__).with_name("classroom.mjs")
SUCCESS = {"status": "SUCCESS", "data": {}}


class Classroom:
    """The class's Node process and what it reported: each member's successful joins (their
    sids, in order), and every event line (with `at`, the loop time it arrived)."""

    def __init__(self, proc: asyncio.subprocess.Process, names: list[str]) -> None:
        self._proc = proc
        self.events: list[dict[str, Any]] = []
        #: name -> (sid, loop time) of each connection whose join succeeded, oldest first
        self.joined: dict[str, list[tuple[str, float]]] = {name: [] for name in names}
        self._changed = asyncio.Event()
        self._reader = asyncio.ensure_future(self._read())

    @classmethod
    async def start(
        cls, url: str, members: Mapping[str, dict[str, Any]], **opts: Any
    ) -> Classroom:
        """One client per member (name -> its join_lesson request) with socket.io-client's
        options `opts` (its defaults otherwise: polling upgraded to WebSocket, reconnection)."""
        spec = {
            "url": url,
            "opts": opts,
            "members": [{"name": name, "join": join} for name, join in members.items()],
        }
        proc = await asyncio.create_subprocess_exec(
            "node", str(CLASSROOM), json.dumps(spec),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        return cls(proc, list(members))

    async def _read(self) -> None:
        assert self._proc.stdout is not None
        async for line in self._proc.stdout:
            event = json.loads(line)
            event["at"] = asyncio.get_running_loop().time()  # when it arrived here
            self.events.append(event)
            if event["type"] == "joined" and event["ack"] == SUCCESS:
                self.joined[event["name"]].append((event["sid"], event["at"]))
            self._changed.set()

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [event for event in self.events if event["type"] == kind]

    def latest(self) -> dict[str, str]:
        """Each member's sid of its last successful join."""
        return {name: joins[-1][0] for name, joins in self.joined.items() if joins}

    async def wait_until(self, check: Callable[[], bool], what: str, within: float) -> None:
        try:
            async with asyncio.timeout(within):
                while not check():
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(
                f"classroom: no {what} within {within:g} s; joins: {self.joined}"
            ) from None

    async def all_joined(self, within: float, since: float = 0.0) -> dict[str, str]:
        """Wait until every member has joined (on a connection of its own) at loop time
        `since` or later; returns their latest sids."""
        await self.wait_until(
            lambda: all(joins and joins[-1][1] >= since for joins in self.joined.values()),
            f"join of every member since {since:g}",
            within,
        )
        return self.latest()

    async def close(self) -> None:
        """Close every client, then end the process (teardown never leaves one behind)."""
        if self._proc.returncode is None:
            assert self._proc.stdin is not None
            self._proc.stdin.write(b'{"op": "close"}\n')
            self._proc.stdin.close()
            try:
                async with asyncio.timeout(5):
                    await self._proc.wait()
            except TimeoutError:
                self._proc.kill()
                await self._proc.wait()
        await self._reader
