"""Room membership for one namespace: a two-way index, so fan-out and cleanup are both O(size)."""

from __future__ import annotations

from collections.abc import Iterable


class Rooms:
    """Which sids are in which rooms of a namespace. Every sid is also a room of its own.

    A sid in its own room is known from ``_rooms_of`` alone: ``_members`` lists only the other
    members of a room named after a sid, so a socket costs one set, not two (~0.2 KB less for
    each: docs/benchmarks.md). And a sid's rooms are a tuple, not a set: a socket is in few
    rooms (its own and its lesson's), and a set of two costs three times a tuple of two (~0.15
    KB more for each idle socket), at the price of a change costing O(rooms of the sid)."""

    __slots__ = ("_members", "_rooms_of")

    def __init__(self) -> None:
        self._members: dict[str, set[str]] = {}
        self._rooms_of: dict[str, tuple[str, ...]] = {}

    def add_sid(self, sid: str) -> None:
        """Register a socket: it joins the room named after itself."""
        self.enter(sid, sid)

    def remove_sid(self, sid: str) -> None:
        """Forget a socket and every membership it had."""
        for room in self._rooms_of.pop(sid, ()):
            self._unlist(sid, room)

    def enter(self, sid: str, room: str) -> None:
        rooms = self._rooms_of.get(sid, ())
        if room not in rooms:
            self._rooms_of[sid] = (*rooms, room)
        if room != sid:
            self._members.setdefault(room, set()).add(sid)

    def leave(self, sid: str, room: str) -> None:
        self._unlist(sid, room)
        self._drop_room(sid, room)

    def _drop_room(self, sid: str, room: str) -> None:
        """Take `room` out of the rooms of `sid`, if it is a registered socket."""
        rooms = self._rooms_of.get(sid)
        if rooms is not None and room in rooms:
            self._rooms_of[sid] = tuple(r for r in rooms if r != room)

    def _unlist(self, sid: str, room: str) -> None:
        members = self._members.get(room)
        if members is not None:
            members.discard(sid)
            if not members:
                del self._members[room]

    def close(self, room: str) -> None:
        """Empty a room (a sid's own room is never closed while the sid lives)."""
        for sid in self._members.pop(room, ()):
            self._drop_room(sid, room)
        owner = self._rooms_of.get(room)
        if owner is not None and room not in owner:
            self._rooms_of[room] = (*owner, room)

    def has_sid(self, sid: str) -> bool:
        """Whether ``sid`` is a registered socket (between add_sid and remove_sid)."""
        return sid in self._rooms_of

    def rooms_of(self, sid: str) -> list[str]:
        return list(self._rooms_of.get(sid, ()))

    def members(self, room: str) -> Iterable[str]:
        members = self._members.get(room, ())
        owner = self._rooms_of.get(room)
        if owner is None or room not in owner:  # no sid of that name is in it
            return members
        return [room, *members] if members else (room,)

    def all_sids(self) -> Iterable[str]:
        return self._rooms_of.keys()
