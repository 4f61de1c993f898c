"""The sync worker's SIGTERM path lets go of the listening socket without a way to hang."""

from __future__ import annotations

import socket
import threading

from ml_app.web.shutdown import _let_go


def test_the_socket_left_in_the_listeners_place_never_blocks_an_accept():
    # The main loop may pass its `alive` check just before SIGTERM's thread swaps the listener,
    # then call accept() on what took its place. That accept must come back at once (nothing
    # queued), so the loop sees `alive` is False and the worker exits; a blocking one would
    # wait forever (for ever, if the master is gone too).
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.setblocking(False)  # as Gunicorn's sync worker keeps its listeners
    outcome: list[BaseException | tuple] = []

    def accept() -> None:
        try:
            outcome.append(listener.accept())
        except OSError as exc:
            outcome.append(exc)

    try:
        _let_go(listener)
        asking = threading.Thread(target=accept, daemon=True)
        asking.start()
        asking.join(5)
        assert outcome, "accept() on the socket left in the listener's place blocks"
        assert isinstance(outcome[0], BlockingIOError), outcome
    finally:
        listener.close()
