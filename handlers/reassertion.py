"""Presence re-asserted from the live connections, once the heartbeat found that Redis lost it
(handlers/healing.py): each live connection's last join is written again where it is missing
(store/reassertion.py), batch by batch.

The live connections are the truth of presence; Redis holds a projection of it. While a batch's
script runs, the lock of each connection in it is held, as a join or a disconnect holds it around
its own script: a connection's join, leave and re-assertion reach Redis one after the other, so a
re-assertion never writes back what a disconnect cleared or a lesson switch left. A connection
whose join or leave is in flight is taken later (that script writes its truth itself).
"""

from __future__ import annotations

import collections

from handlers.connections import Connection, Connections
from store.presence import PresenceStore
from store.reassertion import REASSERT_BATCH, Reasserted, Reassertion, reassert

#: the most items one connection adds to a batch: two entries and a seat map
MAX_CLAIM_SIZE = 3


class Reasserter:
    """Writes again what this process's live connections hold."""

    def __init__(
        self, presence: PresenceStore, connections: Connections, batch: int = REASSERT_BATCH
    ) -> None:
        self._presence = presence
        self._connections = connections
        self._batch = max(batch, MAX_CLAIM_SIZE)

    async def run(self) -> tuple[Reasserted, int, int]:
        """Re-assert every connection connected now; returns what was written, the connections
        re-asserted and the script runs (round trips). Raises StoreUnavailable (ProcessSwept
        included) when Redis stops answering: run it again then."""
        queue = collections.deque(
            record for record in self._connections.records() if record.last_join is not None
        )
        total = Reasserted()
        connections = runs = 0
        while queue:
            locked: list[Connection] = []
            claims: list[Reassertion] = []
            try:
                busy: list[Connection] = []
                while queue and len(claims) * MAX_CLAIM_SIZE + MAX_CLAIM_SIZE <= self._batch:
                    record = queue.popleft()
                    if record.lock.locked():
                        busy.append(record)
                        continue
                    await record.lock.acquire()  # free: returns without yielding
                    locked.append(record)
                    self._claim(record, claims)
                if not locked and busy:
                    # everyone left is joining or leaving: wait for one of them to finish
                    record = busy.pop(0)
                    await record.lock.acquire()
                    locked.append(record)
                    self._claim(record, claims)
                queue.extend(busy)
                if claims:
                    total += await reassert(self._presence, claims)
                    connections += len(claims)
                    runs += 1
            finally:
                for record in locked:
                    record.lock.release()
        return total, connections, runs

    def _claim(self, record: Connection, claims: list[Reassertion]) -> None:
        claim = self._connections.reassertion(record)
        if claim is not None:
            claims.append(claim)
