"""Errors the store raises, as types the handlers can map to ack codes."""


class StoreUnavailable(Exception):
    """Redis or PostgreSQL did not answer in time, or refused the connection."""

    def __init__(self, backend: str, reason: str) -> None:
        super().__init__(f"{backend} unavailable: {reason}")
        self.backend = backend
        self.reason = reason


class ProcessSwept(StoreUnavailable):
    """This process was declared dead and swept by a survivor (it stalled for longer than its
    liveness TTL): what it writes would come back as ghosts, so Redis refuses it. To a client it
    is a store that is not answering; the process drops its connections and starts over."""

    def __init__(self, process_id: str) -> None:
        super().__init__("redis", f"process {process_id} has been swept")
        self.process_id = process_id
