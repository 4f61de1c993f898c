"""A steady load of predictions from a few threads, each answer kept with its request id."""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field

import requests

from tests.support.polling import wait_until
from tests.support.reference import IRIS_SETOSA

LOAD_THREADS = 4
MAX_REQUESTS = 20_000  # per load, so a stuck server cannot keep the loop going
MAX_SECONDS = 60.0
PACE = 0.005  # seconds between one thread's requests: steady load that leaves CPU for the rest


@dataclass
class Answer:
    """One request of the load: what came back, or the exception instead."""

    request_id: str
    sent_at: float
    status: int | None = None
    version: str | None = None
    error: str | None = None


@dataclass
class Load:
    """Threads posting predictions until stopped, or until the count or time bound is hit."""

    url: str
    answers: list[Answer] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def __enter__(self) -> Load:
        started = time.monotonic()
        for _ in range(LOAD_THREADS):
            thread = threading.Thread(target=self._run, args=(started,), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def wait_for_more(self, count: int) -> None:
        """Let `count` more requests complete."""
        target = len(self.answers) + count

        def done() -> bool:
            assert any(t.is_alive() for t in self._threads), "the load hit its bounds"
            return len(self.answers) >= target

        wait_until(done, MAX_SECONDS, f"{count} more answers (the load stalled)")

    def _run(self, started: float) -> None:
        with requests.Session() as session:
            while not self._stop.is_set() and len(self.answers) < MAX_REQUESTS:
                if time.monotonic() - started > MAX_SECONDS:
                    return
                self.answers.append(self._ask(session))
                time.sleep(PACE)

    def _ask(self, session: requests.Session) -> Answer:
        answer = Answer(request_id=uuid.uuid4().hex, sent_at=time.time())
        try:
            response = session.post(
                self.url + "/predict",
                json={"features": IRIS_SETOSA},
                headers={"X-Request-ID": answer.request_id},
                timeout=10,
            )
            answer.status = response.status_code
            answer.version = response.json().get("version")
        except (requests.RequestException, ValueError) as exc:
            answer.error = repr(exc)
        return answer
