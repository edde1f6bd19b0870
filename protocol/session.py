"""The Engine.IO session logic rollcall owns, without I/O (in the style of h11): what a WebSocket
frame, a poll or a POST does to a session, the upgrade's states, and the heartbeat of every
session (one shared PING schedule and its PONG deadlines).

Events go in as method calls with plain values (a frame's text, the loop's time); what to do
comes out as return values. Nothing here reads a clock, writes a socket or knows python-engineio
or Tornado: protocol/engine.py is the glue that does, and tests/unit/test_session.py drives
this module without a socket.
"""

from __future__ import annotations

import enum

# Engine.IO v4 packet types, as the first character of a text frame
CLOSE_TYPE = "1"
PING_TYPE = "2"
PONG_TYPE = "3"
MESSAGE_TYPE = "4"
UPGRADE_TYPE = "5"
#: The only payload a non-MESSAGE packet from a client carries (the upgrade's "2probe").
PROBE = "probe"
PROBE_FRAME = PING_TYPE + PROBE
PROBE_ANSWER = PONG_TYPE + PROBE
#: Packet types a client may send over a WebSocket, and, by POST, the ones a poll may carry.
WEBSOCKET_PACKET_TYPES = frozenset("12345")
CLIENT_PACKET_TYPES = frozenset("134")
#: A MESSAGE carries a Socket.IO packet, which starts with its type digit.
SOCKETIO_TYPES = frozenset("0123456")
#: how early the shared timer may fire and still count a deadline as due (the loop's timers are
#: as coarse as a millisecond; asyncio allows its clock resolution the same way)
CLOCK_SLACK = 0.001


class Phase(enum.Enum):
    """Where a session's packets go."""

    #: long-polling: python-engineio serves its GETs and POSTs from the session's Outbox
    POLLING = "polling"
    #: a WebSocket is open to upgrade the session; its "2probe" has not come yet
    PROBING = "probing"
    #: "3probe" answered and the pending poll ended; waiting for the client's "5"
    PROBED = "probed"
    #: the WebSocket carries the session
    WEBSOCKET = "websocket"
    #: the session has ended
    CLOSED = "closed"


class Received(enum.Enum):
    """What a WebSocket frame asks of the glue."""

    #: hand the frame's payload (after the type) to the Socket.IO layer
    MESSAGE = "message"
    #: the client answered a PING: reschedule (Heartbeat.pong)
    PONG = "pong"
    #: the client closes the session
    CLOSE = "close"
    #: answer PROBE_ANSWER on the WebSocket and end the pending poll (the session is now PROBED)
    PROBED = "probed"
    #: the upgrade is done: write what the Outbox holds to the WebSocket from now on
    UPGRADED = "upgraded"
    #: the upgrade failed: close the WebSocket; the session goes on polling
    UPGRADE_FAILED = "upgrade failed"
    #: not an Engine.IO packet: close the WebSocket (1002) and end the session
    INVALID = "invalid"
    #: nothing to do (a PING or UPGRADE on an open WebSocket, a frame after the close)
    IGNORED = "ignored"


class Poll(enum.Enum):
    """What a long-polling GET of a session gets."""

    #: python-engineio serves it from the Outbox
    SERVE = "serve"
    #: a NOOP at once: an upgrade is in progress, the WebSocket will carry what follows
    NOOP = "noop"
    #: 400: the session is carried by its WebSocket
    REFUSE = "refuse"


def valid_frame(frame: str, types: frozenset[str]) -> bool:
    """Whether a text frame from a client is an Engine.IO packet python-engineio can take as is.

    python-engineio raises on an unknown type (e.g. ``x``), and JSON-decodes any payload that
    does not start with a digit (``4"0"`` would reach us as ``0``; deep nesting raises
    RecursionError). So a MESSAGE must carry a Socket.IO packet, which starts with its type
    digit, and any other packet carries nothing but the upgrade's probe.
    """
    if not frame or frame[0] not in types:
        return False
    payload = frame[1:]
    if frame[0] == MESSAGE_TYPE:
        return bool(payload) and payload[0] in SOCKETIO_TYPES
    return payload in ("", PROBE)


class Session:
    """One Engine.IO session's phase, and what each frame, poll and POST does to it."""

    __slots__ = ("close_reason", "phase", "sid")

    def __init__(self, sid: str) -> None:
        self.sid = sid
        self.phase = Phase.POLLING
        #: the reason rollcall closed the session for, when it did (python-engineio's
        #: disconnect names its own)
        self.close_reason: str | None = None

    @property
    def closed(self) -> bool:
        return self.phase is Phase.CLOSED

    @property
    def upgrading(self) -> bool:
        return self.phase in (Phase.PROBING, Phase.PROBED)

    def websocket_opened(self, upgrade: bool) -> None:
        """A WebSocket was handed this session: a new one carries it now, an upgrade's waits
        for "2probe"."""
        self.phase = Phase.PROBING if upgrade else Phase.WEBSOCKET

    def websocket_closed(self) -> bool:
        """A WebSocket handed this session ended; True if that ends the session (it carried
        it), False if it was an upgrade that failed (polling goes on) or the session ended
        before."""
        if self.phase is Phase.WEBSOCKET:
            return True
        if self.upgrading:
            self.phase = Phase.POLLING
        return False

    def closing(self, reason: str | None = None) -> None:
        """The session ends (`reason`: why rollcall ends it, if it does)."""
        if self.close_reason is None:
            self.close_reason = reason
        self.phase = Phase.CLOSED

    def frame(self, frame: str | bytes) -> Received:
        """What a frame from the session's WebSocket does."""
        phase = self.phase
        if phase is Phase.WEBSOCKET:
            if isinstance(frame, bytes):
                return Received.MESSAGE
            if not valid_frame(frame, WEBSOCKET_PACKET_TYPES):
                return Received.INVALID
            kind = frame[0]
            if kind == MESSAGE_TYPE:
                return Received.MESSAGE
            if kind == PONG_TYPE:
                return Received.PONG
            if kind == CLOSE_TYPE:
                return Received.CLOSE
            return Received.IGNORED
        if phase is Phase.CLOSED:
            return Received.IGNORED
        if isinstance(frame, str) and not valid_frame(frame, WEBSOCKET_PACKET_TYPES):
            return Received.INVALID
        if phase is Phase.PROBING and frame == PROBE_FRAME:
            self.phase = Phase.PROBED
            return Received.PROBED
        if phase is Phase.PROBED and frame == UPGRADE_TYPE:
            self.phase = Phase.WEBSOCKET
            return Received.UPGRADED
        self.phase = Phase.POLLING
        return Received.UPGRADE_FAILED

    def poll(self) -> Poll:
        """What a long-polling GET gets."""
        if self.upgrading:
            return Poll.NOOP
        if self.phase is Phase.WEBSOCKET:
            return Poll.REFUSE
        return Poll.SERVE

    def may_post(self) -> bool:
        """Whether a long-polling POST is taken (not once the WebSocket carries the session)."""
        return self.phase is not Phase.WEBSOCKET


class Heartbeat:
    """Every session's next PING and, once it is sent, the deadline of its PONG: two schedules
    under one timer. Every session waits the same interval (and the same timeout), so insertion
    order is deadline order, and the glue arms one loop timer for ``next_deadline()``."""

    __slots__ = ("_pings", "_pongs", "interval", "timeout")

    def __init__(self, interval: float, timeout: float) -> None:
        self.interval = interval
        self.timeout = timeout
        #: sid -> when its next PING is due
        self._pings: dict[str, float] = {}
        #: sid -> by when the PONG to the PING it was sent must come
        self._pongs: dict[str, float] = {}

    def __len__(self) -> int:
        """Sessions on the schedule (a PING due or a PONG awaited)."""
        return len(self._pings) + len(self._pongs)

    @property
    def pending_pings(self) -> int:
        """Sessions whose next PING is scheduled."""
        return len(self._pings)

    def pong(self, sid: str, now: float) -> None:
        """`sid` opened or answered a PING: its next PING is due one interval from `now`."""
        self._pongs.pop(sid, None)
        self._pings.pop(sid, None)  # re-inserted last, where its new deadline belongs
        self._pings[sid] = now + self.interval

    def forget(self, sid: str) -> None:
        """`sid` closed: nothing is due for it any more."""
        self._pings.pop(sid, None)
        self._pongs.pop(sid, None)

    def clear(self) -> None:
        self._pings.clear()
        self._pongs.clear()

    def next_deadline(self) -> float | None:
        """When something is next due, None if nothing is scheduled."""
        heads = [schedule[next(iter(schedule))] for schedule in (self._pings, self._pongs)
                 if schedule]
        return min(heads) if heads else None

    def overdue(self, sid: str, now: float) -> bool:
        """Whether `sid` was sent a PING and its PONG is late."""
        deadline = self._pongs.get(sid)
        return deadline is not None and deadline < now

    def due(self, now: float) -> tuple[list[str], list[str]]:
        """(sessions to PING now, sessions whose PONG is late); each PINGed session then
        awaits its PONG, each late one is dropped from the schedule."""
        limit = now + CLOCK_SLACK
        late = _take_due(self._pongs, limit)
        ping = _take_due(self._pings, limit)
        for sid in ping:
            self._pongs[sid] = now + self.timeout
        return ping, late


def _take_due(schedule: dict[str, float], limit: float) -> list[str]:
    """Remove and return, from the front of an insertion-ordered schedule, the sids due by
    `limit`."""
    taken = []
    while schedule:
        sid = next(iter(schedule))
        if schedule[sid] > limit:
            break
        del schedule[sid]
        taken.append(sid)
    return taken
