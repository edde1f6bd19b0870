"""Process liveness in Redis, and the sweep of what a dead process held.

Every rollcall process has a random id (PresenceStore.process_id) and, under the bookkeeping
prefix (store/keys.py), a liveness key with a short TTL that its heartbeat renews, a place in the
registry of processes, and a held record that its join and leave scripts keep in the same atomic
run as the presence fields (store/presence_lib.lua). A process whose liveness key has lapsed is
dead: a survivor claims it (only one does: store/claim.lua), then clears what its held record
names, batch by batch, by the rule a disconnect follows (store/sweep.lua). The claim also stops
the dead process from writing anything again, should it only have been frozen: its join script
refuses, its renewal answers SWEPT, and it starts over under a new id.

The timing (how fast a crash heals) belongs to the caller, handlers/healing.py; this module is
the Redis side only.
"""

from __future__ import annotations

import asyncio
import os
import socket
from dataclasses import dataclass
from enum import StrEnum

from redis.exceptions import ResponseError

from store.keys import ALIVE_KEY, HELD_KEY, PROCESSES_KEY, SWEPT_KEY
from store.presence import (
    RECORD_TTL,
    SWEPT_TTL,
    Entry,
    PresenceStore,
    Script,
    new_process_id,
    parse_held_field,
)

RENEW_SCRIPT = Script.load("renew.lua", lib=False)
CLAIM_SCRIPT = Script.load("claim.lua", lib=False)
SWEEP_SCRIPT = Script.load("sweep.lua")
#: entries cleared per run of the sweep script: a dead process with thousands of connections
#: is swept in short script runs, so that Redis keeps serving joins in between
SWEEP_BATCH = 500
#: the error sweep.lua answers when its caller does not hold the claim
NOT_CLAIMED_REPLY = "NOTCLAIMED"


class Renewal(StrEnum):
    """What a heartbeat found (store/renew.lua)."""

    RENEWED = "RENEWED"
    REVIVED = "REVIVED"
    SWEPT = "SWEPT"


class Claim(StrEnum):
    """What an attempt to claim a dead process found (store/claim.lua)."""

    CLAIMED = "CLAIMED"
    ALIVE = "ALIVE"
    TAKEN = "TAKEN"
    RACED = "RACED"


class ClaimLost(Exception):
    """Another process took over the sweep of a dead process (its claimer looked dead)."""


@dataclass(frozen=True)
class SweepResult:
    """What one sweep cleared: of the `entries` the dead process's held record named, `ghosts`
    presence entries still held its sids (`fields` presence fields cleared in all) and
    `rosters` roster records were left; `malformed` held fields that name no entry were
    dropped."""

    process_id: str
    entries: int = 0
    ghosts: int = 0
    fields: int = 0
    malformed: int = 0
    rosters: int = 0


def describe_process() -> str:
    """What the liveness key holds, for the people reading Redis: which host and pid it is."""
    return f"{socket.gethostname()} pid {os.getpid()}"


class Liveness:
    """The Redis side of this process's liveness and of sweeping dead ones."""

    def __init__(self, presence: PresenceStore, ttl: float, description: str = "") -> None:
        self._presence = presence
        self._ttl_ms = max(1, round(ttl * 1000))
        self._description = description or describe_process()

    @property
    def process_id(self) -> str:
        return self._presence.process_id

    @property
    def presence(self) -> PresenceStore:
        return self._presence

    @property
    def ttl(self) -> float:
        """Seconds this process's liveness key lives without a renewal."""
        return self._ttl_ms / 1000

    @property
    def swept(self) -> asyncio.Event:
        """Set when a join script found this process swept (PresenceStore.swept)."""
        return self._presence.swept

    def start_over(self) -> str:
        """Take a new process id (after this one was swept); returns it. Its entries are the
        new id's from now on; the old id's held record is its sweeper's."""
        self._presence.process_id = new_process_id()
        self._presence.swept.clear()
        return self._presence.process_id

    async def renew(self) -> Renewal:
        """Keep this process alive and registered for another TTL, unless it has been swept."""
        process_id = self.process_id
        call = (
            "4",
            self._key(ALIVE_KEY, process_id),
            self._key(SWEPT_KEY, process_id),
            self._presence.key(PROCESSES_KEY),
            self._key(HELD_KEY, process_id),
            process_id,
            self._description,
            str(self._ttl_ms),
            str(RECORD_TTL),
        )
        (result,) = await self._presence.run_script(RENEW_SCRIPT, [call])
        if isinstance(result, Exception):
            raise result
        return Renewal(result)

    async def dead_processes(self) -> list[str]:
        """The registered processes (other than this one) whose liveness key has lapsed."""
        redis = self._presence.client
        async with self._presence.available():
            members = sorted(await redis.smembers(self._presence.key(PROCESSES_KEY)))
            others = [member for member in members if member != self.process_id]
            if not others:
                return []
            async with redis.pipeline(transaction=False) as pipe:
                for process_id in others:
                    pipe.exists(self._key(ALIVE_KEY, process_id))
                alive = await pipe.execute()
        return [process_id for process_id, up in zip(others, alive, strict=True) if not up]

    async def claim(self, dead: str) -> Claim:
        """Claim the dead process `dead` for this one to sweep (see store/claim.lua)."""
        swept_key = self._key(SWEPT_KEY, dead)
        async with self._presence.available():
            claimer = await self._presence.client.get(swept_key) or ""
        call = (
            "3",
            self._key(ALIVE_KEY, dead),
            swept_key,
            self._key(ALIVE_KEY, claimer or dead),
            self.process_id,
            claimer,
            str(SWEPT_TTL),
        )
        (result,) = await self._presence.run_script(CLAIM_SCRIPT, [call])
        if isinstance(result, Exception):
            raise result
        return Claim(result)

    async def sweep(self, dead: str, batch: int = SWEEP_BATCH) -> SweepResult:
        """Clear what the claimed process `dead` held, `batch` entries per script run, then drop
        its held record and registration. Raises ClaimLost if another process took the claim
        over, StoreUnavailable if Redis stops answering (the claim stays: sweep again)."""
        held_key = self._key(HELD_KEY, dead)
        entries = ghosts = fields = malformed = rosters = 0
        cursor = 0
        while True:
            try:
                async with self._presence.available():
                    cursor, held = await self._presence.client.hscan(held_key, cursor, count=batch)
            except ResponseError:  # not a hash: nothing to clear; the last batch deletes it
                cursor, held = 0, {}
                malformed += 1
            parsed: list[tuple[Entry, str]] = []
            for field, sid in held.items():
                entry = parse_held_field(field)
                if entry is None:
                    malformed += 1  # the last batch deletes the whole record, this field too
                else:
                    parsed.append((entry, sid))
            chunks = [parsed[i : i + batch] for i in range(0, len(parsed), batch)] or [[]]
            for i, chunk in enumerate(chunks):
                last = cursor == 0 and i == len(chunks) - 1
                if chunk or last:
                    found, cleared, left = await self._sweep_batch(dead, chunk, last)
                    entries += len(chunk)
                    ghosts += found
                    fields += cleared
                    rosters += left
            if cursor == 0:
                return SweepResult(dead, entries, ghosts, fields, malformed, rosters)

    async def _sweep_batch(
        self, dead: str, chunk: list[tuple[Entry, str]], last: bool
    ) -> tuple[int, int, int]:
        keys, argv = self._presence.entry_list(
            [entry for entry, _ in chunk], [sid for _, sid in chunk]
        )
        call = (
            str(len(keys) + 3),
            self._key(HELD_KEY, dead),
            self._key(SWEPT_KEY, dead),
            self._presence.key(PROCESSES_KEY),
            *keys,
            self.process_id,
            dead,
            "1" if last else "0",
            str(self._presence.roster_ttl),
            *argv,
        )
        (result,) = await self._presence.run_script(SWEEP_SCRIPT, [call])
        if isinstance(result, ResponseError) and str(result).startswith(NOT_CLAIMED_REPLY):
            raise ClaimLost(dead)
        if isinstance(result, Exception):
            raise result
        return int(result[0]), int(result[1]), int(result[2])

    async def retire(self) -> SweepResult:
        """At a graceful stop, once every connection is gone: give up the liveness key, claim
        this process as a survivor would, and sweep its own held record (what leaves that could
        not reach Redis left behind). The swept key stays until its TTL, so that a late write
        of this process is refused like a dead one's."""
        process_id = self.process_id
        async with self._presence.available():
            await self._presence.client.delete(self._key(ALIVE_KEY, process_id))
        if await self.claim(process_id) is not Claim.CLAIMED:
            return SweepResult(process_id)  # a survivor swept it already, or sweeps it now
        return await self.sweep(process_id)

    async def server_run_id(self) -> str | None:
        """The run id of the Redis server answering: another one than before means a restart
        or a failover, either of which may have lost what this process wrote. None when the
        server refuses INFO (a managed Redis may rename it)."""
        try:
            async with self._presence.available():
                info = await self._presence.client.info("server")
        except ResponseError:
            return None
        run_id = info.get("run_id")
        return None if run_id is None else str(run_id)

    def _key(self, template: str, process_id: str) -> str:
        return self._presence.key(template.format(process_id=process_id))
