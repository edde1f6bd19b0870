"""Room membership for one namespace: a two-way index, so fan-out and cleanup are both O(size)."""

from __future__ import annotations

from collections.abc import Iterable


class Rooms:
    """Which sids are in which rooms of a namespace. Every sid is also a room of its own."""

    __slots__ = ("_members", "_rooms_of")

    def __init__(self) -> None:
        self._members: dict[str, set[str]] = {}
        self._rooms_of: dict[str, set[str]] = {}

    def add_sid(self, sid: str) -> None:
        """Register a socket: it joins the room named after itself."""
        self.enter(sid, sid)

    def remove_sid(self, sid: str) -> None:
        """Forget a socket and every membership it had."""
        for room in self._rooms_of.pop(sid, ()):
            members = self._members.get(room)
            if members is not None:
                members.discard(sid)
                if not members:
                    del self._members[room]

    def enter(self, sid: str, room: str) -> None:
        self._members.setdefault(room, set()).add(sid)
        self._rooms_of.setdefault(sid, set()).add(room)

    def leave(self, sid: str, room: str) -> None:
        members = self._members.get(room)
        if members is not None:
            members.discard(sid)
            if not members:
                del self._members[room]
        rooms = self._rooms_of.get(sid)
        if rooms is not None:
            rooms.discard(room)

    def close(self, room: str) -> None:
        """Empty a room (a sid's own room is never closed while the sid lives)."""
        for sid in self._members.pop(room, ()):
            rooms = self._rooms_of.get(sid)
            if rooms is not None:
                rooms.discard(room)
        if room in self._rooms_of:
            self.enter(room, room)

    def has_sid(self, sid: str) -> bool:
        """Whether ``sid`` is a registered socket (between add_sid and remove_sid)."""
        return sid in self._rooms_of

    def rooms_of(self, sid: str) -> list[str]:
        return list(self._rooms_of.get(sid, ()))

    def members(self, room: str) -> Iterable[str]:
        return self._members.get(room, ())

    def all_sids(self) -> Iterable[str]:
        return self._rooms_of.keys()
