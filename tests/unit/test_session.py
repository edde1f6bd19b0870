"""protocol/session.py without a socket: what frames, polls and POSTs do to a session, the
upgrade's states, and the shared heartbeat schedule."""

from __future__ import annotations

import pytest

from protocol.session import (
    PROBE_FRAME,
    WEBSOCKET_PACKET_TYPES,
    Heartbeat,
    Phase,
    Poll,
    Received,
    Session,
    valid_frame,
)

INTERVAL = 25.0
TIMEOUT = 20.0


def on_websocket() -> Session:
    session = Session("s1")
    session.websocket_opened(upgrade=False)
    return session


def upgrading() -> Session:
    session = Session("s1")
    session.websocket_opened(upgrade=True)
    return session


# -- frames on an open WebSocket ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "received"),
    [
        ('42["hello"]', Received.MESSAGE),
        (b"\x01\x02", Received.MESSAGE),
        ("3", Received.PONG),
        ("1", Received.CLOSE),
        ("5", Received.IGNORED),
        (PROBE_FRAME, Received.IGNORED),
        ("x", Received.INVALID),
        ('4"0"', Received.INVALID),  # a MESSAGE must carry a Socket.IO packet
        ("", Received.INVALID),
        ("3junk", Received.INVALID),
    ],
)
def test_a_frame_on_an_open_websocket(frame, received) -> None:
    session = on_websocket()
    assert session.frame(frame) is received
    assert session.phase is Phase.WEBSOCKET


def test_a_frame_after_the_close_is_ignored() -> None:
    session = on_websocket()
    session.closing("parse error")
    assert session.frame('42["late"]') is Received.IGNORED
    assert session.close_reason == "parse error"


# -- the upgrade -------------------------------------------------------------------------------


def test_an_upgrade_is_probe_then_upgrade() -> None:
    session = upgrading()
    assert session.phase is Phase.PROBING
    assert session.poll() is Poll.NOOP
    assert session.frame(PROBE_FRAME) is Received.PROBED
    assert session.poll() is Poll.NOOP
    assert session.may_post()
    assert session.frame("5") is Received.UPGRADED
    assert session.phase is Phase.WEBSOCKET
    assert session.poll() is Poll.REFUSE
    assert not session.may_post()


@pytest.mark.parametrize("frames", [["5"], [PROBE_FRAME, "3"], ['42["early"]'], [b"\x00"]])
def test_an_upgrade_out_of_order_fails_and_polling_goes_on(frames) -> None:
    session = upgrading()
    *first, last = frames
    for frame in first:
        session.frame(frame)
    assert session.frame(last) is Received.UPGRADE_FAILED
    assert session.phase is Phase.POLLING
    assert session.poll() is Poll.SERVE


def test_an_invalid_frame_during_the_upgrade_is_invalid() -> None:
    assert upgrading().frame("x") is Received.INVALID


def test_a_websocket_that_ends_during_the_upgrade_leaves_the_session_polling() -> None:
    session = upgrading()
    session.frame(PROBE_FRAME)
    assert not session.websocket_closed()
    assert session.phase is Phase.POLLING


def test_the_websocket_that_carries_the_session_ends_it_once() -> None:
    session = on_websocket()
    assert session.websocket_closed()
    session.closing()
    assert not session.websocket_closed()


def test_rollcalls_reason_is_kept_over_a_later_one() -> None:
    session = Session("s1")
    session.close_reason = "ping timeout"
    session.closing("server disconnect")
    assert session.closed and session.close_reason == "ping timeout"


def test_valid_frames_over_polling_are_close_pong_and_message() -> None:
    assert valid_frame("3", frozenset("134"))
    assert not valid_frame(PROBE_FRAME, frozenset("134"))
    assert valid_frame(PROBE_FRAME, WEBSOCKET_PACKET_TYPES)


# -- the heartbeat -----------------------------------------------------------------------------


def test_a_session_is_pinged_one_interval_after_its_pong() -> None:
    beat = Heartbeat(INTERVAL, TIMEOUT)
    beat.pong("a", now=0.0)
    assert beat.next_deadline() == INTERVAL
    assert beat.due(INTERVAL - 1) == ([], [])
    assert beat.due(INTERVAL) == (["a"], [])
    assert beat.next_deadline() == INTERVAL + TIMEOUT  # now its PONG is awaited
    assert beat.pending_pings == 0


def test_a_pong_in_time_reschedules_and_a_late_one_is_reported_once() -> None:
    beat = Heartbeat(INTERVAL, TIMEOUT)
    beat.pong("a", 0.0)
    beat.pong("b", 1.0)
    assert beat.due(INTERVAL + 1) == (["a", "b"], [])
    beat.pong("a", INTERVAL + 2)  # a answers, b does not
    assert not beat.overdue("b", INTERVAL + 1 + TIMEOUT)
    assert beat.overdue("b", INTERVAL + 2 + TIMEOUT)
    assert beat.due(INTERVAL + 2 + TIMEOUT) == ([], ["b"])
    assert beat.due(INTERVAL + 3 + TIMEOUT) == ([], [])
    assert len(beat) == 1 and beat.pending_pings == 1


def test_a_forgotten_session_is_never_due_and_order_is_deadline_order() -> None:
    beat = Heartbeat(INTERVAL, TIMEOUT)
    for at, sid in enumerate("abc"):
        beat.pong(sid, float(at))
    beat.forget("a")
    beat.pong("b", 5.0)  # b moves to the end: its deadline is now the latest
    assert beat.next_deadline() == 2.0 + INTERVAL
    assert beat.due(100.0) == (["c", "b"], [])
    beat.clear()
    assert beat.next_deadline() is None and len(beat) == 0


def test_a_timer_a_little_early_still_finds_its_deadline_due() -> None:
    beat = Heartbeat(INTERVAL, TIMEOUT)
    beat.pong("a", 0.0)
    assert beat.due(INTERVAL - 0.0005) == (["a"], [])
