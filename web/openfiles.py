"""The process's open-file limit: raised to the hard limit at start-up, and the default of
--max-connections derived from it.

Every connection is a file descriptor. Distributions start services with a soft limit of 1024
while the hard limit allows far more, so the soft one is raised to the hard one before
serving; --max-connections then defaults to that limit less HEADROOM descriptors for what is not
a client connection (Redis and PostgreSQL pools, the message queue, listening sockets, the
loop's own, log files) and for answering the refused ones.
"""

from __future__ import annotations

import logging
import resource
from typing import NamedTuple

log = logging.getLogger(__name__)

#: descriptors kept out of --max-connections' default for everything but client connections,
#: and for the 503 answers to the clients past it
HEADROOM = 500
#: the fewest connections the default allows, however low the limit
MIN_DEFAULT_CONNECTIONS = 16
#: Linux's ceiling of any open-file limit (fs.nr_open), read when the hard limit is unlimited
NR_OPEN_PATH = "/proc/sys/fs/nr_open"


class OpenFileLimit(NamedTuple):
    """The soft limit before and after start-up, and the hard limit."""

    before: int
    soft: int
    hard: int


def raise_open_file_limit(max_connections: int | None = None) -> OpenFileLimit:
    """Raise the soft RLIMIT_NOFILE to the hard limit (or fs.nr_open when that is unlimited),
    and log both with the connection cap `max_connections` makes of it (see connection_cap);
    a refusal by the kernel is logged and the limit left as it was."""
    before, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else _nr_open()
    soft = before
    if before != resource.RLIM_INFINITY and before < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as error:
            log.warning("could not raise the open-file limit from %d to %d: %s",
                        before, target, error)
    cap = connection_cap(max_connections)
    log.info("open-file limit: soft %s (was %s), hard %s; --max-connections %s",
             _shown(soft), _shown(before), _shown(hard), cap or "0 (unlimited)")
    usable = _usable(soft)
    if max_connections is not None and (max_connections == 0 or max_connections > usable):
        log.warning("--max-connections %d leaves fewer than %d of the %s open files for the "
                    "server's own: past them accept() fails and new clients wait",
                    max_connections, HEADROOM, _shown(soft))
    return OpenFileLimit(before, soft, hard)


def connection_cap(max_connections: int | None) -> int:
    """The --max-connections to serve with: as given, or else the current soft open-file limit
    less HEADROOM."""
    if max_connections is not None:
        return max_connections
    return _usable(resource.getrlimit(resource.RLIMIT_NOFILE)[0])


def _usable(soft: int) -> int:
    """The connections `soft` open files leave room for."""
    if soft == resource.RLIM_INFINITY:
        soft = _nr_open()
    return max(MIN_DEFAULT_CONNECTIONS, soft - HEADROOM)


def _nr_open() -> int:
    with open(NR_OPEN_PATH) as file:
        return int(file.read())


def _shown(limit: int) -> str:
    return "unlimited" if limit == resource.RLIM_INFINITY else str(limit)
