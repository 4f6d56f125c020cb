"""When a PostgreSQL replica tells the others it has committed new events.

Every notification wakes every replica's listener thread (and PostgreSQL's backend behind
it); one per group commit cost the lock path about a seventh of its throughput. So a
replica announces at most once per `ANNOUNCE_EVERY_S`: a commit with events takes the slot
and carries the notification in its own COMMIT's round trip, or, within the interval, owes
it; what is owed goes out on its own `ANNOUNCE_EVERY_S` later (sooner if a later commit
carries it), never not at all. The one slot is taken under a lock, so a commit and the
owed-timer's worker never both announce at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor

from rentabot.domain.errors import DatabaseUnavailableError

log = logging.getLogger("rentabot.postgres")

#: Least time between two new-events notifications of one replica (the feeds coalesce their
#: reads over as long anyway: service/feed.py's COALESCE_S).
ANNOUNCE_EVERY_S = 0.05


class EventAnnouncements:
    """The throttle of one replica's new-events notifications. `send` notifies on its own
    (in a worker thread of `executor`); it raises DatabaseUnavailableError when it cannot."""

    def __init__(
        self, send: Callable[[], None], executor: Executor, stopping: threading.Event
    ) -> None:
        self._send = send
        self._executor = executor
        self._stopping = stopping
        # When this replica last announced, and whether a commit since has not been
        # (written by the worker threads, read on the loop: under the lock).
        self._lock = threading.Lock()
        self._announced_at = -math.inf
        self.owed = False
        self._timer: asyncio.TimerHandle | None = None

    def claim(self) -> bool:
        """Whether the caller may announce now (none did for ANNOUNCE_EVERY_S), taking the
        slot if so. The debt is paid from here: what commits after this notification is
        owed again."""
        with self._lock:
            now = time.monotonic()
            if now - self._announced_at < ANNOUNCE_EVERY_S:
                return False
            self._announced_at = now
            self.owed = False
            return True

    def owe(self) -> None:
        """Note a commit with events that no notification announced (yet)."""
        with self._lock:
            self.owed = True

    def schedule_owed(self, loop: asyncio.AbstractEventLoop) -> None:
        """On the loop, after a group: a commit that was not announced will be, at the
        latest ANNOUNCE_EVERY_S from now (sooner if a later commit carries it)."""
        if self.owed and self._timer is None:
            self._timer = loop.call_later(ANNOUNCE_EVERY_S, self._pay, loop)

    def _pay(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        if self.owed and not self._stopping.is_set():
            with contextlib.suppress(RuntimeError):  # the executor is shut down: stopping
                loop.run_in_executor(self._executor, self.announce_owed, loop)

    def announce_owed(self, loop: asyncio.AbstractEventLoop) -> None:
        """In a worker thread: the owed notification, on its own."""
        if not self.owed:
            return  # a commit carried it meanwhile
        if not self.claim():
            # A commit announced less than ANNOUNCE_EVERY_S ago and a later one is owed:
            # its turn comes ANNOUNCE_EVERY_S after that.
            with contextlib.suppress(RuntimeError):  # the loop closed: stopping
                loop.call_soon_threadsafe(self.schedule_owed, loop)
            return
        try:
            self._send()
        except DatabaseUnavailableError as error:
            self.owe()
            # The other feeds' own re-read (service/feed.py) finds the events instead.
            log.debug("could not announce new events: %s", error)
