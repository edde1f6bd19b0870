"""The lifecycle of a connection's presence: what each sid holds, and clearing it on disconnect.

A join writes presence keys (store/join_lesson.lua); a disconnect, for whatever reason (client
close, transport error, ping timeout, server shutdown), must take back what that sid still holds
and nothing else: store/leave_lesson.lua clears a field only where it still holds this sid, so a
newer connection of the same person is never wiped by an older one's late disconnect.

Each connected sid has a `Connection` record, created by the connect handler (so it is in place
before any event of the sid runs, and before its disconnect can race anything) and dropped by the
disconnect handler. A join updates the record under the record's lock, around its Redis step:

- the entry the join writes is added to `held` *before* the script is sent, so a disconnect
  during the Redis step clears it;
- the disconnect handler marks the record `gone` at once, then waits for the lock: a join in
  flight finishes its Redis step first, and the disconnect's single leave script runs after it,
  clearing whatever that join wrote. A join that finds its record gone writes nothing.

A socket's joins are serialized by the same lock, so the record always matches the last script
Redis ran for the sid.

The same person may be connected twice (two tabs): the latest join owns the presence. When the
owner leaves while an older connection of the same person is still in the lesson here, the
entry is handed over to that connection (the leave script writes its sid instead of clearing),
so the keys always describe a connection that remains. The successor's lock is taken, without
waiting, for as long as the handover runs: its own leave can then never reach Redis first.
Connections of the same person on other rollcall processes are not known here (docs/redis-keys.md).

At a stop with a grace (`hand_over()`, called by server.py), a session the server closes keeps its
presence instead: its fields and roster records stay, held by its sid, so that the client joining
again on the next process (or on a peer) takes them over by the same compare rule, and whatever
nobody takes over is swept once the grace has ended (handlers/healing.py).

A leave that cannot reach Redis is kept (at most MAX_PENDING_LEAVES, the oldest dropped first) and
retried by handlers/healing.py once Redis answers again, so its fields clear without waiting
for a rejoin.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import time
import urllib.parse
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

import metrics
from protocol import Server
from store.errors import StoreUnavailable
from store.presence import Entry, Join, Leave, PresenceStore, is_record
from store.reassertion import Reassertion

log = logging.getLogger(__name__)

OUTCOME_SUCCESS = "SUCCESS"
OUTCOME_UNAVAILABLE = "UNAVAILABLE"
#: a session the server closed at a stop that hands presence over: nothing was cleared
OUTCOME_HANDED_OVER = "HANDED_OVER"
#: the disconnect reason of a session the server closed (Server.close_sessions)
CLOSED_BY_SERVER = Server.reason.SERVER_DISCONNECT
REFUSED_CLOSING = "SHUTTING_DOWN"
#: leaves kept for a retry while Redis is unreachable; beyond it the oldest are dropped (and
#: counted): their fields then wait for a rejoin, or for the sweep once this process is gone
MAX_PENDING_LEAVES = 10_000
#: kept leaves retried at once (each is one script run; all of them one pipeline)
RETRY_BATCH = 64


class ClientGone(Exception):
    """The sid disconnected before or while its join ran: there is nobody to answer, and the
    disconnect handler clears whatever the join wrote."""


@dataclass(eq=False, slots=True)
class Connection:
    """What the server remembers about one connected sid, to clean up after it."""

    sid: str
    #: the lesson whose Socket.IO room the sid is in (None before its first successful join)
    lesson_id: str | None = None
    #: presence entries whose Redis fields may hold this sid: those of its joins of its current
    #: lesson, and every entry in `doubtful`
    held: frozenset[Entry] = frozenset()
    #: entries of joins that timed out: Redis may still run their script at any later time
    doubtful: frozenset[Entry] = frozenset()
    #: set by the disconnect handler; a join seeing it writes nothing more
    gone: bool = False
    #: held by a join around its Redis step and record update, by the disconnect's leave, and
    #: by a re-assertion of presence (handlers/reassertion.py)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    #: the last join Redis ran for the sid: what a re-assertion writes again
    last_join: Join | None = None

    def leaving(self, lesson_id: str) -> tuple[Entry, ...]:
        """The held entries a join of `lesson_id` must clear first: those of other lessons (a
        lesson switch). Entries of the same lesson are kept, so a re-join never clears itself."""
        return tuple(entry for entry in self.held if entry.lesson_id != lesson_id)


@dataclass(frozen=True)
class PendingLeave:
    """A disconnected sid whose leave could not reach Redis, and the entries it may still hold."""

    sid: str
    entries: tuple[Entry, ...]


class Connections:
    """The `Connection` record of every connected sid, and the connect and disconnect handlers
    that create and retire them."""

    def __init__(self, presence: PresenceStore) -> None:
        self._presence = presence
        self._records: dict[str, Connection] = {}
        #: the live sids whose last joins wrote each entry, oldest first: the sid itself while
        #: it is the only one (as it nearly always is: a dict of one costs ~200 bytes more)
        self._holders: dict[Entry, str | dict[str, None]] = {}
        self._disconnecting = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self.closing = False
        #: set by hand_over(): sessions the server closes keep their presence
        self.handing_over = False
        #: connections closed since then whose presence stayed for the grace
        self.handed_over = 0
        #: leaves that could not reach Redis, oldest first, to retry
        self.pending: collections.deque[PendingLeave] = collections.deque()
        metrics.PENDING_LEAVES.track(self)

    def get(self, sid: str) -> Connection:
        """The record of a connected sid; `ClientGone` once it has disconnected."""
        record = self._records.get(sid)
        if record is None:
            raise ClientGone(sid)
        return record

    def joined(self, record: Connection, join: Join, left: Iterable[Entry]) -> None:
        """Index a join that Redis ran: `record` is now the latest holder of what `join` wrote
        and no longer holds `left` (the entries of a lesson it switched away from)."""
        if record.gone:
            return
        record.last_join = join
        for entry in left:
            self._unhold(entry, record.sid)
        sid = record.sid
        for entry in join.entries:
            holders = self._holders.get(entry)
            if holders is None or holders == sid:
                self._holders[entry] = sid
                continue
            if isinstance(holders, str):
                holders = self._holders[entry] = {holders: None}
            holders.pop(sid, None)
            holders[sid] = None

    def _unhold(self, entry: Entry, sid: str) -> None:
        holders = self._holders.get(entry)
        if holders is None:
            return
        if isinstance(holders, str):
            if holders == sid:
                del self._holders[entry]
            return
        holders.pop(sid, None)
        if len(holders) == 1:
            self._holders[entry] = next(iter(holders))
        elif not holders:
            del self._holders[entry]

    def _holders_of(self, entry: Entry) -> tuple[str, ...] | dict[str, None]:
        """The live sids whose last joins wrote `entry`, oldest first."""
        holders = self._holders.get(entry, ())
        return (holders,) if isinstance(holders, str) else holders

    def records(self) -> list[Connection]:
        """The record of every connected sid, as of now."""
        return list(self._records.values())

    def reassertion(self, record: Connection) -> Reassertion | None:
        """What re-asserting `record` writes again (its lock held): its last join, with the
        entries of it that it still holds and is the latest holder of here; None once gone."""
        join = record.last_join
        if record.gone or join is None:
            return None
        entries = tuple(
            entry
            for entry in join.entries
            if entry in record.held and self._latest_holder(entry) == record.sid
        )
        return Reassertion(join, entries)

    def _latest_holder(self, entry: Entry) -> str:
        return next(reversed(self._holders_of(entry)), "")

    @contextlib.asynccontextmanager
    async def successors(
        self, sid: str, entries: Iterable[Entry]
    ) -> AsyncIterator[tuple[str, ...]]:
        """For each entry `sid` leaves, the live connection that takes it over ("" for none):
        the latest other holder whose lock is free. Their locks are held until the block ends,
        so the handover reaches Redis before anything they do themselves."""
        claimed: dict[str, Connection] = {}
        chosen: list[str] = []
        try:
            for entry in entries:
                successor = ""
                for holder in reversed(self._holders_of(entry)):
                    record = self._records.get(holder)
                    if holder == sid or record is None or record.gone:
                        continue
                    if holder not in claimed:
                        if record.lock.locked():
                            continue
                        await record.lock.acquire()  # free: returns without yielding
                        claimed[holder] = record
                    successor = holder
                    break
                chosen.append(successor)
            yield tuple(chosen)
        finally:
            for record in claimed.values():
                record.lock.release()

    def close(self) -> None:
        """Refuse every new socket from now on (shutdown has begun)."""
        self.closing = True

    async def wait_idle(self) -> None:
        """Wait until every disconnect handler that has started has cleared its presence."""
        await self._idle.wait()

    async def connect(self, sid: str, environ: dict[str, Any], auth: Any) -> bool:
        """Connect handler: refuses new sockets once shutdown has begun.

        It never awaits, so the socket cannot disconnect before its record exists.
        """
        if self.closing:
            log.info("connect", extra={"event": "connect", "sid": sid, "outcome": REFUSED_CLOSING})
            return False
        self._records[sid] = Connection(sid)
        log.info(
            "connect",
            extra={
                "event": "connect",
                "sid": sid,
                "transport": _transport(environ.get("QUERY_STRING", "")),
                "outcome": OUTCOME_SUCCESS,
            },
        )
        return True

    def hand_over(self) -> None:
        """A stop with a grace has begun: refuse every new socket, and from now on let each
        session the server closes keep its presence (fields and roster records) for the client
        to take over by joining again, on the next process or a peer. A client that leaves by
        itself meanwhile still leaves."""
        self.closing = True
        self.handing_over = True

    async def disconnect(self, sid: str, reason: str) -> None:
        """Disconnect handler: clear what the sid still holds, in one Redis round trip (or, for
        a session closed by a stop that hands presence over, leave it in place).

        The protocol layer has already taken the sid out of its rooms and dropped its session.
        Waits for a join of the sid in flight, so that what it writes is cleared too.
        """
        record = self._records.pop(sid, None)
        if record is None:
            return
        record.gone = True
        for entry in record.held:
            self._unhold(entry, sid)
        self._disconnecting += 1
        self._idle.clear()
        started = time.perf_counter()
        try:
            if self.handing_over and reason == CLOSED_BY_SERVER:
                outcome, cleared = await self._hand_over(record), 0
            else:
                outcome, cleared = await self._retire(record)
            log.info(
                "disconnect",
                extra={
                    "event": "disconnect",
                    "sid": sid,
                    "reason": reason,
                    "lesson_id": record.lesson_id,
                    "outcome": outcome,
                    "cleared": cleared,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                },
            )
        finally:
            self._disconnecting -= 1
            if not self._disconnecting:
                self._idle.set()

    async def _retire(self, record: Connection) -> tuple[str, int]:
        """Clear what the sid holds (or hand it to its successors); the outcome and the number
        of presence fields cleared."""
        sid = record.sid
        async with record.lock:
            entries = tuple(record.held)
            record.held = frozenset()
            if not entries:
                return OUTCOME_SUCCESS, 0
            try:
                async with self.successors(sid, entries) as successors:
                    return OUTCOME_SUCCESS, await self._presence.leave(
                        Leave(sid, entries, successors)
                    )
            except StoreUnavailable as exc:
                # Kept for retry_pending(); meanwhile the keys keep this sid.
                self._keep(PendingLeave(sid, entries))
                log.warning("presence of %s not cleared, kept to retry: %s", sid, exc)
                return OUTCOME_UNAVAILABLE, 0

    async def _hand_over(self, record: Connection) -> str:
        """Leave what the sid holds as it is, held by it, for the grace of the stop: only note
        in its roster records when its connection ended (the sweep stamps that time if nobody
        takes them over). Without Redis the sweep stamps its own time instead."""
        sid = record.sid
        async with record.lock:  # a join in flight finishes first: what it wrote stays too
            entries = tuple(record.held)
            record.held = frozenset()
            self.handed_over += 1
            if any(is_record(entry) for entry in entries):
                try:
                    await self._presence.hand_over(Leave(sid, entries))
                except StoreUnavailable as exc:
                    log.warning("end of %s not noted in its roster records: %s", sid, exc)
            return OUTCOME_HANDED_OVER

    def _keep(self, leave: PendingLeave) -> None:
        if len(self.pending) >= MAX_PENDING_LEAVES:
            dropped = self.pending.popleft()
            metrics.LEAVES_DROPPED.inc()
            log.warning("retry queue full: presence of %s dropped from it", dropped.sid)
        self.pending.append(leave)

    async def retry_pending(self) -> int:
        """Run the leaves kept while Redis was unreachable, oldest first, until they are all
        done or Redis fails again (those left stay kept); returns how many remain. Each hands
        its entries to a live connection of the same person as a disconnect would, chosen now."""
        while self.pending:
            batch = [self.pending.popleft() for _ in range(min(RETRY_BATCH, len(self.pending)))]
            results = await asyncio.gather(
                *(self._retry(leave) for leave in batch), return_exceptions=True
            )
            failed = []
            for leave, result in zip(batch, results, strict=True):
                if isinstance(result, StoreUnavailable):
                    failed.append(leave)
                elif isinstance(result, BaseException):
                    log.error("kept leave of %s failed", leave.sid, exc_info=result)
                else:
                    log.info(
                        "leave retried",
                        extra={"event": "leave_retry", "sid": leave.sid, "cleared": result},
                    )
            if failed:
                self.pending.extendleft(reversed(failed))
                break
        return len(self.pending)

    async def _retry(self, leave: PendingLeave) -> int:
        async with self.successors(leave.sid, leave.entries) as successors:
            return await self._presence.leave(Leave(leave.sid, leave.entries, successors))


@functools.lru_cache(maxsize=64)
def _transport(query: str) -> str:
    """The transport a handshake's query names ("-" for none). Most clients' queries are one of
    a few texts (a WebSocket's has no cache-busting timestamp), so each is parsed once."""
    return urllib.parse.parse_qs(query).get("transport", ["-"])[0]
