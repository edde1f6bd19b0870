"""Socket.IO event handlers of rollcall, registered on the server by `register`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from handlers.join_lesson import EVENT as JOIN_LESSON
from handlers.join_lesson import JoinLesson
from handlers.tokens import TokenVerifier

if TYPE_CHECKING:
    from config import Config
    from protocol import Server
    from server import Services


def register(sio: Server, services: Services, config: Config) -> None:
    """Attach every event handler to `sio`."""
    join_lesson = JoinLesson(
        sio,
        services.lessons,
        services.presence,
        TokenVerifier(config.access_token_secret),
        services.tracker,
        config.participant_roles,
    )
    sio.on(JOIN_LESSON)(join_lesson.handle)
