"""A script of the project (scripts/run.sh, scripts/demo.py) run as a user runs it from a
terminal: in a session of its own, as the foreground job, its output read as it comes."""

from __future__ import annotations

import asyncio
import os
import pathlib
import signal

from tests.support import ROOT

#: the demo lesson's class, which `make run` loads
DEMO_SQL = ROOT / "scripts" / "demo.sql"
#: the line scripts/demo.py prints once the class is in, before it waits for Ctrl-C
DEMO_READY = "The class stays connected"


class ScriptProcess:
    """A running script; `interrupt()` is a terminal's Ctrl-C."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.out = ""
        self._more = asyncio.Event()
        self._readers = [asyncio.ensure_future(self._read(stream))
                         for stream in (proc.stdout, proc.stderr)]

    @classmethod
    async def start(cls, cwd: pathlib.Path, *argv: str, env: dict[str, str]) -> ScriptProcess:
        proc = await asyncio.create_subprocess_exec(
            *argv, cwd=cwd, env=env, start_new_session=True,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        return cls(proc)

    async def _read(self, stream: asyncio.StreamReader | None) -> None:
        assert stream is not None
        async for line in stream:
            self.out += line.decode()
            self._more.set()

    async def wait_for(self, text: str) -> str:
        """All output so far once a line holds `text` (the caller bounds the wait)."""
        while text not in self.out:
            self._more.clear()
            await self._more.wait()
        return self.out

    def interrupt(self) -> None:
        """Ctrl-C: SIGINT to the whole process group."""
        os.killpg(self.proc.pid, signal.SIGINT)

    async def ended(self) -> int:
        code = await self.proc.wait()
        await asyncio.gather(*self._readers)
        return code

    async def kill(self) -> None:
        if self.proc.returncode is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            await self.proc.wait()
        await asyncio.gather(*self._readers)
