"""Work around aio-libs/aiopg#909: a failed connection attempt leaves its reader registered.

When PostgreSQL refuses a connection, psycopg2 closes the socket while aiopg still watches it for
reading and writing; aiopg then drops the reader but forgets the writer. uvloop keeps a dead poll
handle for that descriptor number, and the next socket given the same number cannot be watched
("UVPoll closed"): after a PostgreSQL outage, Tornado could no longer accept client connections.
The upstream fix (aio-libs/aiopg#926) is not released; remove this module once aiopg ships it.
"""

from __future__ import annotations

import contextlib
import weakref
from typing import Any

from aiopg.connection import Connection

_original_ready = Connection._ready


def _ready(weak_self: weakref.ref[Any]) -> None:
    conn = weak_self()
    fileno = None if conn is None else conn._fileno
    writing = conn is not None and conn._writing
    _original_ready(weak_self)
    if conn is not None and fileno is not None and conn._fileno is None and writing:
        with contextlib.suppress(OSError, RuntimeError):
            conn._loop.remove_writer(fileno)


def install() -> None:
    """Patch aiopg, process-wide (server.py's setup_process calls it before serving); idempotent."""
    if Connection._ready is not _ready:
        Connection._ready = staticmethod(_ready)
