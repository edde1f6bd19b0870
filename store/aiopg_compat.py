"""Work around aio-libs/aiopg#909: a failed connection attempt leaves its reader registered.

When PostgreSQL refuses a connection, psycopg2 closes the socket while aiopg still watches it for
reading and writing; aiopg then drops the reader but forgets the writer. uvloop keeps a dead poll
handle for that descriptor number, and the next socket given the same number cannot be watched
("UVPoll closed"): after a PostgreSQL outage, Tornado could no longer accept client connections.
The upstream fix (aio-libs/aiopg#926) is not released; remove this module once aiopg ships it.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from typing import Any

import aiopg

#: aiopg's private callback for a connection's descriptor (see docs/architecture.md, "Other
#: libraries' internals"; tests/integration/resilience/test_aiopg_compat.py)
_original_ready = aiopg.Connection._ready


def _ready(weak_self: weakref.ref[Any]) -> None:
    """aiopg's ``Connection._ready``, then: if it just forgot the connection's descriptor
    (``_fileno``, closed by psycopg2), no watcher is left on that number."""
    conn = weak_self()
    fileno = None if conn is None else conn._fileno
    _original_ready(weak_self)
    if fileno is not None and conn._fileno is None:
        with contextlib.suppress(OSError, RuntimeError):
            asyncio.get_running_loop().remove_writer(fileno)


def install() -> None:
    """Patch aiopg, process-wide (server.py's setup_process calls it before serving); idempotent."""
    if aiopg.Connection._ready is not _ready:
        aiopg.Connection._ready = staticmethod(_ready)
