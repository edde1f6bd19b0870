"""Socket.IO event handlers of rollcall, registered on the server by `register`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from config import TEACHER_AUTH_TOKEN
from handlers.join_lesson import EVENT as JOIN_LESSON
from handlers.join_lesson import JoinLesson
from handlers.limits import JoinRateLimiter
from handlers.presence import Connections
from handlers.tokens import TokenVerifier

if TYPE_CHECKING:
    from config import Config
    from protocol import Server
    from server import Services


def register(sio: Server, services: Services, config: Config) -> Connections:
    """Attach every event handler to `sio`; returns the per-sid records that shutdown needs."""
    connections = Connections(services.presence)
    sio.on("connect")(connections.connect)
    sio.on("disconnect")(connections.disconnect)
    join_lesson = JoinLesson(
        sio,
        services.lessons,
        services.presence,
        TokenVerifier(config.access_token_secret),
        services.tracker,
        config.participant_roles,
        connections,
        JoinRateLimiter(config.join_rate, config.join_burst),
        require_teacher_token=config.teacher_auth == TEACHER_AUTH_TOKEN,
    )
    sio.on(JOIN_LESSON)(join_lesson.handle)
    return connections
