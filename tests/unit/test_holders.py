"""handlers.connections.Connections' index of who holds each presence entry, without I/O: an
entry held by one sid (nearly every entry) is held as that sid, not a dict of one, and the
latest holder is still the one a re-assertion writes for."""

from __future__ import annotations

from handlers.connections import Connection, Connections
from store.presence import ParticipantJoin


def joined(connections: Connections, sid: str) -> Connection:
    """`sid` connected and joined lesson "l" as client "c" (the same person on each sid)."""
    record = Connection(sid)
    connections._records[sid] = record
    join = ParticipantJoin("l", 1, sid, "c", "student", "u", verified=False)
    record.held = frozenset(join.entries)
    connections.joined(record, join, ())
    return record


def latest(connections: Connections, record: Connection) -> int:
    """How many of its entries `record` is the latest holder of."""
    reassertion = connections.reassertion(record)
    assert reassertion is not None
    return len(reassertion.entries)


def test_an_entry_held_by_one_sid_costs_no_dict_of_holders() -> None:
    connections = Connections(None)  # type: ignore[arg-type]  # joined, reassertion: no I/O
    first = joined(connections, "a")
    assert [type(h).__name__ for h in connections._holders.values()] == ["str", "str"]
    assert latest(connections, first) == 2
    second = joined(connections, "b")  # a second tab of the same person: the latest holds
    assert latest(connections, first) == 0
    assert latest(connections, second) == 2
    for entry in second.held:
        connections._unhold(entry, "b")
    assert [type(h).__name__ for h in connections._holders.values()] == ["str", "str"]
    assert latest(connections, first) == 2
    for entry in first.held:
        connections._unhold(entry, "a")
    assert connections._holders == {}
