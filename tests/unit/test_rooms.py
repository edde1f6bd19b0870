"""protocol.rooms.Rooms: every sid is a room of its own, kept without a members set of its own
(a set less per socket), and the rooms behave as when each room listed its members."""

from __future__ import annotations

import sys

from protocol.rooms import Rooms


def rooms_with(*sids: str) -> Rooms:
    rooms = Rooms()
    for sid in sids:
        rooms.add_sid(sid)
    return rooms


def test_a_sid_is_the_one_member_of_its_own_room_without_a_set_for_it() -> None:
    rooms = rooms_with("a", "b")
    assert list(rooms.members("a")) == ["a"]
    assert rooms.rooms_of("a") == ["a"]
    assert rooms._members == {}  # a socket costs one set (its rooms), not two


def test_a_sids_rooms_cost_no_more_than_a_tuple_of_them() -> None:
    """An idle socket is in its own room and its lesson's: held as a tuple of the two, not a
    set (216 bytes against 56), and changed by replacing it."""
    rooms = rooms_with("a")
    rooms.enter("a", "lesson")
    rooms.enter("a", "lesson")
    assert sys.getsizeof(rooms._rooms_of["a"]) <= sys.getsizeof(("a", "lesson"))
    assert rooms.rooms_of("a") == ["a", "lesson"]
    rooms.leave("a", "a")
    assert rooms.rooms_of("a") == ["lesson"]
    assert list(rooms.members("a")) == []


def test_a_lesson_room_lists_its_members_and_a_sid_its_rooms() -> None:
    rooms = rooms_with("a", "b")
    rooms.enter("a", "lesson")
    rooms.enter("b", "lesson")
    assert sorted(rooms.members("lesson")) == ["a", "b"]
    assert sorted(rooms.rooms_of("a")) == ["a", "lesson"]
    rooms.leave("a", "lesson")
    assert list(rooms.members("lesson")) == ["b"]
    assert rooms.rooms_of("a") == ["a"]


def test_another_sid_in_a_sids_room_is_a_member_beside_it() -> None:
    rooms = rooms_with("a", "b")
    rooms.enter("b", "a")
    assert sorted(rooms.members("a")) == ["a", "b"]
    rooms.remove_sid("a")
    assert list(rooms.members("a")) == ["b"]  # as before: the room outlives the sid
    assert not rooms.has_sid("a")


def test_a_sid_that_left_its_own_room_gets_nothing_sent_to_it() -> None:
    rooms = rooms_with("a")
    rooms.leave("a", "a")
    assert list(rooms.members("a")) == []
    assert rooms.rooms_of("a") == []
    assert rooms.has_sid("a")


def test_closing_a_sids_room_empties_it_but_for_the_sid() -> None:
    rooms = rooms_with("a", "b")
    rooms.enter("b", "a")
    rooms.leave("a", "a")
    rooms.close("a")
    assert list(rooms.members("a")) == ["a"]
    assert rooms.rooms_of("b") == ["b"]
    assert rooms.rooms_of("a") == ["a"]


def test_closing_a_room_and_removing_a_sid_forget_them() -> None:
    rooms = rooms_with("a", "b")
    rooms.enter("a", "lesson")
    rooms.enter("b", "lesson")
    rooms.close("lesson")
    assert list(rooms.members("lesson")) == []
    assert rooms.rooms_of("a") == ["a"]
    rooms.enter("a", "lesson")
    rooms.remove_sid("a")
    assert list(rooms.members("lesson")) == []
    assert list(rooms.members("a")) == []
    assert sorted(rooms.all_sids()) == ["b"]
    assert rooms._members == {}
