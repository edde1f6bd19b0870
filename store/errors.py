"""Errors the store raises, as types the handlers can map to ack codes."""


class StoreUnavailable(Exception):
    """Redis or PostgreSQL did not answer in time, or refused the connection."""

    def __init__(self, backend: str, reason: str) -> None:
        super().__init__(f"{backend} unavailable: {reason}")
        self.backend = backend
        self.reason = reason
