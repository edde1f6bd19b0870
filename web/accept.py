"""The accept loop of the HTTP server, which pauses instead of spinning when the process runs
out of file descriptors.

Tornado's ``netutil.add_accept_handler`` lets an ``accept()`` error escape to the event loop.
Past the open-file limit every ``accept()`` fails with EMFILE while the listening socket stays
readable, so the loop calls it again at once: one core burnt and one traceback logged per
failure (1.5 million lines in three minutes under a storm of devices, issue 26). Here such a
failure takes the listening socket out of the loop for a short delay that doubles while the
failures go on (FIRST_PAUSE up to MAX_PAUSE), counts it (``rollcall_accept_failures_total``)
and logs one WARNING per REPORT_INTERVAL with the count. The connections already held are
served as before; the clients waiting meanwhile stay in the kernel's backlog.

``AcceptBackoff`` owns its listening sockets from ``add_sockets`` to ``stop`` and hands each
accepted connection to the server's public ``handle_stream``, as Tornado's own accept handler
does, so it needs none of ``TCPServer``'s internals.
"""

from __future__ import annotations

import errno
import logging
import socket
import time
from collections.abc import Callable, Iterable
from typing import Any

from tornado.ioloop import IOLoop
from tornado.iostream import IOStream

import metrics

log = logging.getLogger(__name__)

#: accept() errors that mean "no file descriptor or buffer for one more connection now"
EXHAUSTED = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
#: seconds of the first pause after a failure, and the most any pause lasts
FIRST_PAUSE = 0.01
MAX_PAUSE = 1.0
#: at most one WARNING about failed accepts per this many seconds
REPORT_INTERVAL = 10.0
#: connections the kernel queues for accept() (Tornado listens with 128; Linux caps it at
#: net.core.somaxconn): with 500 handshakes in flight, 128 overflowed, and each SYN dropped was
#: retried by the client a second later, a second added to its connect (issue 26)
LISTEN_BACKLOG = 4096
#: connections accepted per wake-up at most, so that a burst cannot starve the held ones
#: (Tornado's own figure: its default listen backlog)
ACCEPT_BATCH = 128


class Acceptor:
    """Accepts connections on a listening socket and hands each to `callback`, pausing when
    ``accept()`` fails with one of EXHAUSTED."""

    def __init__(
        self,
        sock: socket.socket,
        callback: Callable[[socket.socket, Any], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sock = sock
        self.callback = callback
        self._clock = clock
        self._loop = IOLoop.current()
        self._stopped = False
        self._watching = False
        self._resume_handle: object | None = None
        self._report_handle: object | None = None
        #: the pause the next failure waits (0 once an accept succeeds)
        self._pause = 0.0
        #: failures not yet logged, and when the next WARNING may be written
        self._unreported = 0
        self._first_unreported = 0.0
        self._last_error = ""
        self._next_report = 0.0

    def start(self) -> None:
        self._watch()

    def stop(self) -> None:
        """Stop accepting (the socket is the caller's to close); a pending count is logged."""
        self._stopped = True
        self._unwatch()
        for handle in (self._resume_handle, self._report_handle):
            if handle is not None:
                self._loop.remove_timeout(handle)
        self._resume_handle = self._report_handle = None
        self._report()

    def _watch(self) -> None:
        if not self._watching and not self._stopped:
            self._loop.add_handler(self.sock, self._ready, IOLoop.READ)
            self._watching = True

    def _unwatch(self) -> None:
        if self._watching:
            self._loop.remove_handler(self.sock)
            self._watching = False

    def _ready(self, fd: object, events: int) -> None:
        for _ in range(ACCEPT_BATCH):
            if self._stopped:
                return
            try:
                connection, address = self.sock.accept()
            except BlockingIOError:  # every waiting connection is taken
                return
            except ConnectionAbortedError:  # closed while it waited in the backlog
                continue
            except OSError as error:
                if error.errno not in EXHAUSTED:
                    raise
                self._failed(error)
                return
            self._pause = 0.0
            self.callback(connection, address)

    def _failed(self, error: OSError) -> None:
        """Take the socket out of the loop for the next pause, and count the failure."""
        metrics.ACCEPT_FAILURES.inc()
        self._pause = min(MAX_PAUSE, self._pause * 2 if self._pause else FIRST_PAUSE)
        self._unwatch()
        self._resume_handle = self._loop.call_later(self._pause, self._resume)
        now = self._clock()
        if not self._unreported:
            self._first_unreported = now
        self._unreported += 1
        self._last_error = errno.errorcode.get(error.errno or 0, str(error.errno))
        if now >= self._next_report:
            self._report()
        elif self._report_handle is None:
            self._report_handle = self._loop.call_later(self._next_report - now, self._report)

    def _resume(self) -> None:
        self._resume_handle = None
        self._watch()

    def _report(self) -> None:
        """Log the failures counted since the last WARNING, if any."""
        self._report_handle = None
        if not self._unreported:
            return
        now = self._clock()
        log.warning(
            "accept() failed %d times in %.1f s (%s: out of file descriptors); new connections "
            "wait in the backlog, up to %.2f s each time (keep --max-connections below the "
            "open-file limit)",
            self._unreported, now - self._first_unreported, self._last_error, MAX_PAUSE,
        )
        self._unreported = 0
        self._next_report = now + REPORT_INTERVAL


class AcceptBackoff:
    """A ``tornado.tcpserver.TCPServer`` mix-in: its listening sockets queue LISTEN_BACKLOG
    connections and are served by an ``Acceptor`` instead of
    ``tornado.netutil.add_accept_handler``; ``stop()`` stops them and closes the sockets."""

    _acceptors: list[Acceptor] | None = None

    def add_sockets(self, sockets: Iterable[socket.socket]) -> None:
        if self._acceptors is None:
            self._acceptors = []
        for sock in sockets:
            sock.listen(LISTEN_BACKLOG)  # on a listening socket, sets its queue's length
            acceptor = Acceptor(sock, self._serve)
            acceptor.start()
            self._acceptors.append(acceptor)

    def stop(self) -> None:
        for acceptor in self._acceptors or ():
            acceptor.stop()
            acceptor.sock.close()
        self._acceptors = []
        super().stop()  # type: ignore[misc]

    def _serve(self, connection: socket.socket, address: Any) -> None:
        """One accepted connection, as Tornado's TCPServer serves it (no TLS here)."""
        self.handle_stream(IOStream(connection), address)  # type: ignore[attr-defined]
