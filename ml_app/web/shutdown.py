"""Graceful shutdown under Gunicorn: readiness goes 503, then the listener closes, then exit.

On SIGTERM the master marks the server as draining (readiness answers 503) and waits
GUNICORN_DRAIN_SECONDS for balancers to notice, serving as usual; then Gunicorn's own graceful
stop runs: the master closes its listening socket and sends SIGTERM to the workers.

A sync worker busy with a request (a slow client, say) is blocked in a system call that
SIGTERM does not interrupt, so Gunicorn's handler cannot run, and the worker's copy of the
listening socket would keep the kernel completing connections nobody will accept: they hang,
then are reset. DrainingSyncWorker receives SIGTERM on a thread of its own instead: it accepts
whatever is already queued (served before the worker exits, never reset), and drops the
worker's reference to the listening socket at once, so new connections are refused promptly
once every process has let go of it. In-flight requests finish; the worker exits.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from typing import Any

from gunicorn.workers.sync import SyncWorker

from ml_app.core.drain import DrainMarker
from ml_app.web.connection import ReadDeadlineSocket, answer_error, read_deadline


class _Bound:
    """What SyncWorker.handle asks of a listener, kept after the listener itself is gone."""

    def __init__(self, address: Any) -> None:
        self.address = address

    def getsockname(self) -> Any:
        """The address the connection was accepted on."""
        return self.address


class DrainingSyncWorker(SyncWorker):
    """Gunicorn's sync worker that lets go of the listening socket the moment it must stop.

    It also bounds how long a request may take to arrive, and answers what Gunicorn refuses
    itself in the one JSON error shape (see ml_app.web.connection).
    """

    _accepted = 0.0  # when the connection being handled was taken (for its access line)

    def handle(self, listener: Any, client: Any, addr: Any) -> None:
        """Serve one connection, its reads bounded by the read deadline."""
        self._accepted = time.perf_counter()
        seconds = read_deadline(self.cfg.timeout)
        if seconds is not None and not self.cfg.is_ssl:  # Gunicorn's TLS must wrap a real socket
            client = ReadDeadlineSocket(client, seconds)
        super().handle(listener, client, addr)

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        """Answer an error met outside the app in the one JSON shape (not Gunicorn's HTML)."""
        answer_error(client, req, exc, self._accepted)

    def init_signals(self) -> None:
        """Gunicorn's signals, but SIGTERM goes to a thread that waits for it (see module)."""
        super().init_signals()
        self._queued: list[tuple[_Bound, socket.socket, Any]] = []
        # Threads started later (store watcher, shadow) inherit the mask: SIGTERM reaches only
        # the thread that waits for it.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        threading.Thread(target=self._stop_on_sigterm, name="ml_app-drain", daemon=True).start()

    def _stop_on_sigterm(self) -> None:
        signal.sigwait({signal.SIGTERM})
        for listener in self.sockets:
            address = listener.getsockname()
            self._queued += [(_Bound(address), *pair) for pair in _accept_queued(listener)]
            _let_go(listener)
        self.alive = False
        os.write(self.PIPE[1], b".")  # wake the main loop if it waits in select()

    def run(self) -> None:
        """Serve until told to stop, then the connections accepted on the way out."""
        super().run()
        for bound, client, address in self._queued:
            self.handle(bound, client, address)


def _accept_queued(listener: Any) -> list[tuple[socket.socket, Any]]:
    """Every connection already waiting in the listening socket's queue (without waiting)."""
    accepted = []
    listener.setblocking(False)  # as the sync worker keeps it; said again, not assumed
    while True:
        try:
            client, address = listener.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return accepted
        client.setblocking(True)
        accepted.append((client, address))


def _let_go(listener: Any) -> None:
    """Drop this process's reference to the listening socket without freeing its fd number.

    The main thread may be in select() or accept() on that fd: closing it there could hand the
    number to another file. dup2 puts an idle listening socket (loopback, never connected to)
    in its place in one step, so those calls just find nothing to accept. It is non-blocking, as
    the listener was: an accept() called on it after the swap returns at once and the worker's
    loop sees it must stop (a blocking one would hang the worker until the master killed it).
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as idle:
        idle.bind(("127.0.0.1", 0))
        idle.listen(1)
        idle.setblocking(False)  # O_NONBLOCK lives on the file, which the dup2 shares
        os.dup2(idle.fileno(), listener.fileno())


def drain_on_sigterm(server: Any, seconds: float, marker: DrainMarker) -> None:
    """Install the master's SIGTERM handler: mark draining now, stop after `seconds`.

    Time since a preStop hook made the marker counts towards the wait; a second SIGTERM stops
    at once. (A signal handler: no logging here, Gunicorn's log may hold its lock.)
    """

    def begin(signum: int, frame: Any) -> None:
        remaining = max(0.0, seconds - marker.age()) if marker.active() else seconds
        marker.start()
        signal.signal(signal.SIGTERM, server.signal)
        timer = threading.Timer(remaining, server.signal, (signal.SIGTERM, None))
        timer.daemon = True
        timer.start()

    signal.signal(signal.SIGTERM, begin)
