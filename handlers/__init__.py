"""Socket.IO event handlers of rollcall, registered on the server by `register`.

The handlers use `store/` and `protocol/` and nothing above them: the entry script (server.py)
hands in the open stores and the settings the handlers need, as plain values.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING

from handlers.connections import Connections
from handlers.join_lesson import EVENT as JOIN_LESSON
from handlers.join_lesson import JoinLesson
from handlers.limits import JoinRateLimiter
from handlers.tokens import USER_ID_CLAIM, TokenVerifier

if TYPE_CHECKING:
    from protocol import Server
    from store.lessons import LessonStore
    from store.presence import PresenceStore
    from tracking import Tracker


@dataclass(frozen=True)
class JoinSettings:
    """What join_lesson is configured with (the flags of the same names)."""

    access_token_secret: str | None
    participant_roles: Collection[str]
    join_rate: float
    join_burst: int
    #: --teacher-auth token: a teacher's join needs its own teacher token
    require_teacher_token: bool = True
    #: --user-id-claim: the token claim naming the platform's user
    user_id_claim: str = USER_ID_CLAIM


def register(
    sio: Server,
    lessons: LessonStore,
    presence: PresenceStore,
    tracker: Tracker,
    settings: JoinSettings,
) -> Connections:
    """Attach every event handler to `sio`; returns the per-sid records that shutdown needs."""
    connections = Connections(presence)
    sio.on("connect")(connections.connect)
    sio.on("disconnect")(connections.disconnect)
    join_lesson = JoinLesson(
        sio,
        lessons,
        presence,
        TokenVerifier(settings.access_token_secret, user_id_claim=settings.user_id_claim),
        tracker,
        settings.participant_roles,
        connections,
        JoinRateLimiter(settings.join_rate, settings.join_burst),
        require_teacher_token=settings.require_teacher_token,
    )
    sio.on(JOIN_LESSON)(join_lesson.handle)
    return connections
